// RuncastStream over stand-ins for the browser's EventSource and WebSocket (what Node lacks),
// scripted per connection: what each transport hands the stream, and what the stream does with a
// WebSocket's close codes.
import assert from "node:assert/strict";
import { test } from "node:test";

import { RuncastStream } from "../../../../gateway/web/static/runcast-client.js";

/** Each connection's script: (connection, n) => void, n counting from 1; after the last, the first. */
let scripts = [];
/** Every connection made, in order. */
let made = [];

function script(...steps) {
  scripts = steps;
  made = [];
}

/** Runs the script of the connection just made, once the stream has set its handlers. */
function play(connection) {
  made.push(connection);
  const step = scripts[made.length - 1] ?? scripts[0];
  setTimeout(() => step(connection, made.length), 0);
}

/** EventSource as a browser has it: only listened-for names get through, `lastEventId` carries over. */
class FakeEventSource extends EventTarget {
  static CLOSED = 2;
  lastEventId = "";
  readyState = 0;
  closed = false;
  at = Date.now();
  /** @type {((e: Event) => void) | null} */
  onopen = null;
  /** @type {((e: Event) => void) | null} */
  onerror = null;
  constructor(url) {
    super();
    this.url = url;
    play(this);
  }
  open() {
    this.readyState = 1;
    this.onopen?.(new Event("open"));
  }
  /** An event block: `name` "" is one without an `event:` line. */
  send(name, data, id = null) {
    if (id !== null) this.lastEventId = id;
    this.dispatchEvent(new MessageEvent(name || "message", { data: JSON.stringify(data), lastEventId: this.lastEventId }));
  }
  close() {
    this.closed = true;
    this.readyState = 2;
  }
}

/** WebSocket frames as runcast sends them: {"epoch", "seq", "event", "data"}. */
class FakeWebSocket {
  closed = false;
  at = Date.now();
  constructor(url) {
    this.url = url;
    play(this);
  }
  open() {
    this.onopen?.({});
  }
  send(event, data, seq = null, epoch = "e1") {
    this.onmessage?.({ data: JSON.stringify({ epoch: seq === null ? null : epoch, seq, event, data }) });
  }
  /** The server's close (1006: the connection failed, or was refused before opening). */
  end(code) {
    this.onclose?.({ code });
  }
  close() {
    this.closed = true;
  }
}

globalThis.EventSource = FakeEventSource;
globalThis.WebSocket = FakeWebSocket;
// The probe of a refused EventSource or WebSocket: as from a page of another origin (CORS).
globalThis.fetch = async () => {
  throw new TypeError("Failed to fetch");
};

/** Resolves with what `watch` returns once it returns something, after any of `names`. */
function when(stream, names, watch, ms = 3000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.close();
      reject(new Error(`not reached: ${JSON.stringify(stream.connection)}, ${made.length} connections`));
    }, ms);
    for (const name of names) {
      stream.addEventListener(name, (e) => {
        const value = watch(e);
        if (value === undefined) return;
        clearTimeout(timer);
        resolve(value);
      });
    }
  });
}

const ended = (stream) => when(stream, ["end"], (e) => e.detail);
const gap = (i) => made[i].at - made[i - 1].at;
const delta = (value) => ({ id: "msg_1", delta: { content: [{ index: 0, type: "text", text: { value } }] } });

test("EventSource: a Responses stream from a data-only server (no event: lines) is seen", async () => {
  // LiteLLM's framing: EventSource names these "message", which the client did not listen for.
  const events = [
    { type: "response.created", response: { id: "resp_1", status: "in_progress", output: [] } },
    { type: "response.output_item.added", item: { id: "msg_1", type: "message", role: "assistant", content: [] } },
    { type: "response.output_text.delta", item_id: "msg_1", content_index: 0, delta: "Hello" },
    { type: "response.completed", response: { id: "resp_1", status: "completed" } },
  ];
  script((es) => {
    es.open();
    events.forEach((e, i) => es.send("", e, `e1-${i + 1}`));
  });
  const stream = new RuncastStream({ kind: "response", id: "resp_1" });
  assert.deepEqual(await ended(stream), { reason: "done" });
  assert.deepEqual([stream.state.status, stream.state.items[0].text, made.length], ["completed", "Hello", 1]);
});

test("EventSource: a notice after a numbered event is not taken for a duplicate", async () => {
  // runcast's notices carry no id, and an EventSource's lastEventId is the last one it saw.
  script((es) => {
    es.open();
    es.send("thread.message.delta", delta("Hi"), "e1-1");
    es.send("runcast.degraded", { reason: "redis_unreachable", since: 1700000000 });
    es.send("thread.message.delta", delta("!"), "e1-2");
  });
  const stream = new RuncastStream({ kind: "thread", id: "th_1" });
  const seen = [];
  stream.addEventListener("event", (e) => seen.push([e.detail.name, e.detail.seq]));
  await when(stream, ["update"], () => (seen.length === 3 ? true : undefined));
  stream.close();
  assert.deepEqual(seen, [["thread.message.delta", 1], ["runcast.degraded", null], ["thread.message.delta", 2]]);
  assert.equal(stream.connection.duplicates, 0);
});

test("WebSocket: close 1000 ends a run, response or chat channel, not a thread", async () => {
  // An ended run followed at its last id: runcast has nothing to send, and closes with 1000.
  script((ws) => {
    ws.open();
    ws.end(1000);
  });
  const run = new RuncastStream({ kind: "run", id: "run_1", transport: "websocket", since: "e1-9", retryDelays: [10] });
  assert.deepEqual(await ended(run), { reason: "no-content" });
  assert.equal(made.length, 1);

  // A chat stream ended by runcast.upstream_lost: done there, whatever the transport.
  script((ws) => {
    ws.open();
    ws.send("message", { id: "c1", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: "Hi" } }] }, 1);
    ws.send("runcast.upstream_lost", { error: { code: "upstream_lost", message: "cut" }, kind: "chat", id: "c1" }, 2);
    ws.end(1000);
  });
  const chat = new RuncastStream({ kind: "chat", id: "c1", transport: "websocket", since: 0, retryDelays: [10] });
  assert.deepEqual(await ended(chat), { reason: "done" });
  assert.deepEqual([chat.state.error.code, made.length], ["upstream_lost", 1]);

  script((ws) => {
    ws.open();
    ws.end(1000);
  });
  const thread = new RuncastStream({ kind: "thread", id: "th_1", transport: "websocket", retryDelays: [10] });
  await when(thread, ["connection"], () => (made.length === 3 ? true : undefined));
  thread.close();
});

test("WebSocket: 1012 waits runcast.shutdown's retry_ms, else the longest delay; 1013 backs off", async () => {
  script(
    (ws) => {
      ws.open();
      ws.send("thread.message.delta", delta("a"), 1);
      ws.send("runcast.shutdown", { epoch: "e1", seq: 1, retry_ms: 150 });
      ws.end(1012);
    },
    (ws) => {
      ws.open();
      ws.send("thread.message.delta", delta("b"), 2);
      ws.end(1012); // a restart without the notice
    },
    (ws) => {
      ws.open();
      ws.send("thread.message.delta", delta("c"), 3);
      ws.end(1013); // try again later
    },
    (ws) => {
      ws.open();
      ws.send("thread.message.delta", delta("d"), 4);
      ws.end(1013);
    },
  );
  const stream = new RuncastStream({ kind: "thread", id: "th_1", transport: "websocket", retryDelays: [10, 60, 100] });
  await when(stream, ["connection"], () => (made.length === 5 ? true : undefined));
  stream.close();
  assert.equal(stream.state.items[0].text, "abcd");
  assert.ok(gap(1) >= 150 && gap(2) >= 100, `1012: ${[gap(1), gap(2)]}`);
  // Each 1013 steps the delays on, whatever the connection brought.
  assert.ok(gap(3) >= 60 && gap(4) >= 100, `1013: ${[gap(3), gap(4)]}`);
});

test("WebSocket: refusals the probe cannot explain (a 403 on another origin) end in a fatal error", async () => {
  script((ws) => ws.end(1006));
  const stream = new RuncastStream({ kind: "run", id: "run_1", transport: "websocket", retryDelays: [5], maxFailures: 3 });
  const errors = [];
  stream.addEventListener("error", (e) => errors.push(e.detail.fatal));
  const failed = await when(stream, ["connection"], (e) => (e.detail.state === "failed" ? e.detail : undefined));
  await new Promise((ok) => setTimeout(ok, 30));
  assert.deepEqual([made.length, errors], [3, [false, false, true]]);
  assert.equal(failed.reason, "closed (1006) (3 connection attempts in a row failed)");
});

test("WebSocket: a token function that fails in the probe or the next connection is retried", async () => {
  let calls = 0;
  const token = () => {
    calls += 1;
    if (calls === 2 || calls === 3) return Promise.reject(new Error("expired"));
    return `tok${calls}`;
  };
  script(
    (ws) => ws.end(1006), // refused: the probe asks for a token (call 2)
    (ws) => {
      ws.open();
      ws.send("thread.message.delta", delta("ok"), 1);
      ws.end(1000);
    },
  );
  const stream = new RuncastStream({ kind: "run", id: "run_1", transport: "websocket", token, retryDelays: [5] });
  const errors = [];
  stream.addEventListener("error", (e) => errors.push(e.detail.message));
  assert.deepEqual(await ended(stream), { reason: "no-content" });
  assert.deepEqual(errors, ["closed (1006)", "token: Error: expired"]);
  assert.deepEqual(made.map((ws) => new URL(ws.url).searchParams.get("token")), ["tok1", "tok4"]);
  assert.equal(stream.state.items[0].text, "ok");
});
