// RuncastStream over a stand-in for the browser's EventSource (which Node lacks), scripted per
// connection: what the transport hands the stream.
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

globalThis.EventSource = FakeEventSource;
// The probe of a refused EventSource: as from a page of another origin (CORS).
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
