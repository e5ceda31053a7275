// RuncastStream over the fetch SSE reader (Node has no EventSource) against a scripted server:
// snapshot first, resume after cuts with ?since (no gap, no duplicate), end on 204 or done.
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer } from "node:http";
import { test } from "node:test";

import { RuncastStream } from "../../../../gateway/web/static/runcast-client.js";

const delta = (seq, value, epoch = "e1") =>
  `id: ${epoch}-${seq}\nevent: thread.message.delta\ndata: ${JSON.stringify({ id: "msg_1", delta: { content: [{ index: 0, type: "text", text: { value } }] } })}\n\n`;

/** A server answering the n-th request with script[n](req, res); records each request's URL. */
async function scripted(script) {
  const seen = [];
  const server = createServer((req, res) => {
    seen.push({ url: req.url, lastEventId: req.headers["last-event-id"] ?? null, auth: req.headers.authorization ?? null, at: Date.now() });
    const step = script[seen.length - 1] ?? ((_, r) => { r.writeHead(500); r.end(); });
    step(req, res);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  const close = () => {
    server.closeAllConnections(); // a stream still open (the client was closed) ends here
    return new Promise((ok) => server.close(ok));
  };
  return { base: `http://127.0.0.1:${port}`, seen, close };
}

const sse = (res) => res.writeHead(200, { "Content-Type": "text/event-stream" });

/** The gaps (ms) between the server's requests. */
const gaps = (seen) => seen.slice(1).map((r, i) => r.at - seen[i].at);

/** Resolves once `done()` holds after an update, rejects if it does not in time. */
function until(stream, done, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.close();
      reject(new Error(`not reached: ${JSON.stringify(stream.connection)}`));
    }, ms);
    stream.addEventListener("update", () => {
      if (!done()) return;
      clearTimeout(timer);
      resolve(undefined);
    });
  });
}

/** Resolves with the stream's end detail, rejects if it does not end in time. */
function ended(stream, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      const info = JSON.stringify(stream.connection);
      stream.close(); // stop retrying, so the test process can exit
      reject(new Error(`no end: ${info}`));
    }, ms);
    stream.addEventListener("end", (e) => {
      clearTimeout(timer);
      resolve(e.detail);
    });
  });
}

test("snapshot, two cuts, resume without gap or duplicate, then 204 ends it", async () => {
  const snapshot = {
    epoch: "e1",
    seq: 2,
    snapshot: { run_id: "run_1", status: "in_progress", messages: [{ id: "msg_1", role: "assistant", status: "in_progress", content: [{ type: "text", text: { value: "Hel" } }] }], steps: [] },
  };
  const server = await scripted([
    (req, res) => {
      sse(res);
      // CRLF line ends and a comment line: the reader must take both.
      res.write(`: ping\r\nid: e1-2\r\nevent: runcast.snapshot\r\ndata: ${JSON.stringify(snapshot)}\r\n\r\n`);
      res.write(delta(3, "lo"));
      setTimeout(() => res.socket.destroy(), 20); // a network cut
    },
    (req, res) => {
      sse(res);
      res.write(delta(3, "lo")); // already applied: must be dropped
      res.write(delta(4, ", "));
      res.end(delta(5, "world")); // the body ends without done
    },
    (req, res) => {
      res.writeHead(204);
      res.end();
    },
  ]);
  const stream = new RuncastStream({ kind: "run", id: "run_1", baseUrl: server.base, token: "tok", retryDelays: [10] });
  const seqs = [];
  stream.addEventListener("event", (e) => seqs.push(e.detail.seq));
  const end = await ended(stream);
  await server.close();

  assert.deepEqual(end, { reason: "no-content" });
  assert.deepEqual(server.seen.map((r) => r.url), ["/streams/runs/run_1?snapshot=1", "/streams/runs/run_1?since=e1-3", "/streams/runs/run_1?since=e1-5"]);
  assert.ok(server.seen.every((r) => r.auth === "Bearer tok"));
  assert.deepEqual(seqs, [3, 4, 5]);
  assert.equal(stream.state.items[0].text, "Hello, world");
  const info = stream.connection;
  assert.deepEqual([info.state, info.cuts, info.resumes, info.duplicates, info.lastSeq, info.lastId, info.via], ["ended", 2, 1, 1, 5, "e1-5", "fetch"]);
});

test("a new epoch (the broker lost its log): history_lost, the snapshot, then seqs of the new epoch", async () => {
  const snapshot = (epoch, seq, text) => ({
    epoch,
    seq,
    snapshot: { run_id: "run_1", status: "in_progress", messages: [{ id: "msg_1", role: "assistant", status: "in_progress", content: [{ type: "text", text: { value: text } }] }], steps: [] },
  });
  const server = await scripted([
    (req, res) => {
      sse(res);
      res.write(`id: e1-7\nevent: runcast.snapshot\ndata: ${JSON.stringify(snapshot("e1", 7, "Hel"))}\n\n`);
      res.write(delta(8, "lo"));
      setTimeout(() => res.socket.destroy(), 20);
    },
    (req, res) => {
      sse(res);
      const lost = { since: "e1-8", epoch: "e2", first_seq: 1, last_seq: 1 };
      res.write(`event: runcast.history_lost\ndata: ${JSON.stringify(lost)}\n\n`);
      res.write(`id: e2-1\nevent: runcast.snapshot\ndata: ${JSON.stringify(snapshot("e2", 1, "Hello"))}\n\n`);
      res.end(delta(2, ", world", "e2")); // seq 2 < 8, but of the new epoch: applied
    },
    (req, res) => {
      res.writeHead(204);
      res.end();
    },
  ]);
  const stream = new RuncastStream({ kind: "run", id: "run_1", baseUrl: server.base, retryDelays: [10] });
  const ids = [];
  stream.addEventListener("event", (e) => ids.push(e.detail.id));
  const end = await ended(stream);
  await server.close();
  assert.deepEqual(end, { reason: "no-content" });
  assert.deepEqual(server.seen.map((r) => r.url), ["/streams/runs/run_1?snapshot=1", "/streams/runs/run_1?since=e1-8", "/streams/runs/run_1?since=e2-2"]);
  assert.deepEqual(ids, ["e1-8", "e2-2"]);
  assert.equal(stream.state.items[0].text, "Hello, world");
  assert.equal(stream.connection.duplicates, 0);
});

test("a run channel ends at its final done; a done after requires_action does not end it", async () => {
  const run = (status) => `event: thread.run.${status}\ndata: ${JSON.stringify({ id: "run_1", status })}\n\n`;
  const server = await scripted([
    (req, res) => {
      sse(res);
      res.write(`id: e1-1\n${run("requires_action")}id: e1-2\nevent: done\ndata: [DONE]\n\n`);
      setTimeout(() => res.end(`id: e1-3\n${run("in_progress")}${delta(4, "ok")}id: e1-5\n${run("completed")}id: e1-6\nevent: done\ndata: [DONE]\n\n`), 30);
    },
  ]);
  const stream = new RuncastStream({ kind: "run", id: "run_1", baseUrl: server.base, since: 0 });
  const end = await ended(stream);
  await server.close();
  assert.deepEqual(end, { reason: "done" });
  assert.equal(server.seen.length, 1);
  assert.equal(server.seen[0].url, "/streams/runs/run_1?since=0");
  assert.equal(stream.state.items[0].text, "ok");
  assert.deepEqual(stream.state.timeline.map((t) => t.status), ["requires_action", "in_progress", "completed"]);
});

test("an unknown run is a fatal error, not a retry loop", async () => {
  const server = await scripted([
    (req, res) => {
      res.writeHead(404, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: { message: "unknown run 'run_x'", type: "not_found_error", code: "unknown_run" } }));
    },
  ]);
  const stream = new RuncastStream({ kind: "run", id: "run_x", baseUrl: server.base, retryDelays: [10] });
  const error = await new Promise((resolve) => stream.addEventListener("error", (e) => resolve(e.detail)));
  await server.close();
  assert.deepEqual(error, { message: "unknown run 'run_x'", status: 404, fatal: true });
  assert.equal(stream.connection.state, "failed");
  assert.equal(server.seen.length, 1);
});

const runEvent = (seq, id, status, epoch = "e1") => `id: ${epoch}-${seq}\nevent: thread.run.${status}\ndata: ${JSON.stringify({ id, status })}\n\n`;

test("a thread channel resumes after a cut even when its last run had finished", async () => {
  // A finished run ended the stream for good on a cut: thread channels never end by themselves.
  const server = await scripted([
    (req, res) => {
      sse(res);
      res.write(`${runEvent(1, "run_1", "completed")}id: e1-2\nevent: done\ndata: [DONE]\n\n`);
      setTimeout(() => res.socket.destroy(), 20);
    },
    (req, res) => {
      sse(res);
      res.write(runEvent(3, "run_2", "in_progress") + delta(4, "again"));
    },
  ]);
  const stream = new RuncastStream({ kind: "thread", id: "th_1", baseUrl: server.base, since: 0, retryDelays: [10] });
  await until(stream, () => stream.state.items[0]?.text === "again");
  stream.close();
  await server.close();
  assert.deepEqual(server.seen.map((r) => r.url), ["/streams/threads/th_1?since=0", "/streams/threads/th_1?since=e1-2"]);
  assert.deepEqual([stream.state.runId, stream.connection.cuts, stream.connection.resumes], ["run_2", 1, 1]);
});

test("a token function that fails is a non-fatal error, then a retry", async () => {
  // It left the stream connecting for ever: no error, no retry (an unhandled rejection).
  const server = await scripted([(req, res) => res.writeHead(204).end()]);
  let calls = 0;
  const token = async () => {
    calls += 1;
    if (calls === 1) throw new Error("no session");
    return "tok";
  };
  const stream = new RuncastStream({ kind: "run", id: "run_1", baseUrl: server.base, token, retryDelays: [10] });
  const errors = [];
  stream.addEventListener("error", (e) => errors.push(e.detail));
  const end = await ended(stream);
  await server.close();
  assert.deepEqual(end, { reason: "no-content" });
  assert.deepEqual(errors, [{ message: "token: Error: no session", status: null, fatal: false }]);
  assert.deepEqual(server.seen.map((r) => r.auth), ["Bearer tok"]);
});

test("reconnect pacing: only new events reset the backoff; runcast.shutdown's retry_ms is waited", async () => {
  const shutdown = `event: runcast.shutdown\nretry: 300\ndata: {"epoch":"e1","seq":2,"retry_ms":300}\n\n`;
  const server = await scripted([
    (req, res) => sse(res).end(delta(1, "a")),
    (req, res) => sse(res).end(delta(1, "a")), // a duplicate only: nothing new
    (req, res) => sse(res).end(delta(1, "a")),
    (req, res) => sse(res).end(delta(2, "b") + shutdown),
    (req, res) => res.writeHead(204).end(),
  ]);
  const stream = new RuncastStream({ kind: "run", id: "run_1", baseUrl: server.base, retryDelays: [10, 60, 120] });
  const end = await ended(stream);
  await server.close();
  assert.deepEqual(end, { reason: "no-content" });
  const [, second, third, shutdownWait] = gaps(server.seen);
  assert.ok(second >= 60 && third >= 120, `backoff: ${gaps(server.seen)}`);
  assert.ok(shutdownWait >= 300, `retry_ms: ${gaps(server.seen)}`);
});

test("a cut for being slow (runcast.lagged) backs off even after new events", async () => {
  const lagged = `id: e1-2\nevent: runcast.lagged\ndata: {"error":{"code":"subscriber_lagged"},"epoch":"e1","seq":2}\n\n`;
  const server = await scripted([
    (req, res) => sse(res).end(delta(1, "a")),
    (req, res) => sse(res).end(delta(2, "b") + lagged),
    (req, res) => res.writeHead(204).end(),
  ]);
  const stream = new RuncastStream({ kind: "run", id: "run_1", baseUrl: server.base, retryDelays: [10, 200] });
  await ended(stream);
  await server.close();
  assert.deepEqual(server.seen.map((r) => r.url.split("?")[1]), ["snapshot=1", "since=e1-1", "since=e1-2"]);
  assert.ok(gaps(server.seen)[1] >= 200, `${gaps(server.seen)}`);
});

test("history lost in a restart: the new epoch's empty snapshot keeps what is shown, and says so", async () => {
  const message = (id, value) => ({ id, role: "assistant", status: "in_progress", content: [{ type: "text", text: { value } }] });
  const snapshot = { epoch: "e1", seq: 2, snapshot: { run_id: "run_1", status: "in_progress", messages: [message("msg_1", "Hel")], steps: [] } };
  const empty = { epoch: "e2", seq: 0, snapshot: { run_id: null, thread_id: null, status: null, messages: [], steps: [], usage: null, done: false } };
  const lost = { since: "e1-3", epoch: "e2", first_seq: 1, last_seq: 0 };
  const newDelta = `id: e2-2\nevent: thread.message.delta\ndata: ${JSON.stringify({ id: "msg_2", delta: { content: [{ index: 0, type: "text", text: { value: "New" } }] } })}\n\n`;
  const server = await scripted([
    (req, res) => {
      sse(res);
      res.write(`id: e1-2\nevent: runcast.snapshot\ndata: ${JSON.stringify(snapshot)}\n\n${delta(3, "lo")}`);
      setTimeout(() => res.socket.destroy(), 20);
    },
    (req, res) => {
      sse(res);
      res.write(`event: runcast.history_lost\ndata: ${JSON.stringify(lost)}\n\n`);
      res.write(`id: e2-0\nevent: runcast.snapshot\ndata: ${JSON.stringify(empty)}\n\n`);
      res.write(runEvent(1, "run_2", "in_progress", "e2") + newDelta);
    },
  ]);
  const stream = new RuncastStream({ kind: "thread", id: "th_1", baseUrl: server.base, retryDelays: [10] });
  const notices = [];
  stream.addEventListener("historylost", (e) => notices.push(e.detail));
  await until(stream, () => stream.state.items.length === 2);
  stream.close();
  await server.close();
  assert.deepEqual(stream.state.items.map((i) => [i.runId, i.text]), [["run_1", "Hello"], ["run_2", "New"]]);
  assert.deepEqual(notices, [lost]);
  assert.equal(stream.connection.lastId, "e2-2");
});
