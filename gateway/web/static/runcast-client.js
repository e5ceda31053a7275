// @ts-check
/**
 * runcast-client.js: follow a runcast channel from a browser (or Node >= 18), no dependencies.
 *
 * One `RuncastStream` subscribes to one channel over SSE or WebSocket, takes the snapshot first,
 * then live events; after a cut it resumes by itself from the last position it applied (no gap,
 * no duplicate: events at or below that seq of the same epoch are dropped); it folds events into
 * the text and tool calls of each message with a reducer chosen by the channel's protocol. Run,
 * response and chat channels stop on the final `done` (or `runcast.upstream_lost`), or when the
 * server says nothing more will come: 204, or a WebSocket closed with 1000. Thread, conversation
 * and named channels never end by themselves: they resume after any cut.
 *
 *     import { RuncastStream } from "/client/runcast-client.js";
 *     const stream = new RuncastStream({ kind: "run", id: runId, token });
 *     stream.addEventListener("update", () => render(stream.state.items));
 *     stream.addEventListener("connection", (e) => showIndicator(e.detail));
 *     stream.addEventListener("end", (e) => console.log("ended:", e.detail.reason));
 *
 * Events (all `CustomEvent`): `event` {seq, id, name, data} for every event applied; `snapshot`
 * {seq, id}; `update` {state}; `connection` (see `ConnectionInfo`); `end` {reason: "done" |
 * "no-content" | "closed"}; `error` {message, status, fatal}; `historylost` {since, epoch,
 * first_seq, last_seq} when runcast no longer held the position resumed from (the state is
 * replaced by the snapshot that follows, unless that one is empty, at seq 0: then it is kept).
 *
 * Transports: "sse" uses `EventSource` where it exists (it cannot set headers, so the token goes
 * in `?token=`, and it only sees event names it listens for: each protocol lists its own), else
 * a fetch-based SSE reader; "fetch" forces that reader (token in `Authorization`); "websocket"
 * uses frames `{"epoch", "seq", "event", "data"}`. Reconnects are the client's own (the browser's
 * EventSource retry is ~3 s and blind to 204): `?since=<epoch>-<seq>` on the new connection, after
 * `retryDelays` that grow while connections bring nothing new (or are cut as too slow:
 * `runcast.lagged`, WebSocket 1013), or after the `retry_ms` of `runcast.shutdown` (WebSocket
 * 1012). A token function that fails is retried the same way. A status that will not change (400,
 * 401, 403, 404, 410) is a fatal `error`, and so are `maxFailures` attempts in a row that never
 * open when it is set (a WebSocket refused on another origin's page hides its 403 even from the
 * probe); by default the client never gives up, as a chat page must outlive a gateway's outage.
 *
 * Positions: runcast ids are `<epoch>-<seq>`. Seqs count within one epoch (one life of the
 * channel's log); after a broker restart the epoch changes, seqs restart, and runcast answers the
 * old position with `runcast.history_lost` and the snapshot, which carry the new epoch.
 */

/** @typedef {"run" | "thread" | "response" | "conversation" | "chat" | "channel"} ChannelKind */
/** @typedef {"assistants" | "responses" | "chat" | "auto"} Protocol */
/** @typedef {"sse" | "fetch" | "websocket"} TransportName */

/**
 * @typedef {object} ToolCall
 * @property {string} id
 * @property {number} index
 * @property {string} type
 * @property {string} name
 * @property {string} arguments
 * @property {string | null} output
 * @property {"running" | "waiting" | "completed" | "failed"} status
 * @property {number} firstSeenAt  local clock (ms) when the call first appeared
 * @property {number | null} argumentsDoneAt  when its arguments were complete
 * @property {number | null} outputAt  when its output was seen
 * @property {number | null} durationMs  handler time reported by runcast tool automation
 * @property {string | null} error
 */

/**
 * @typedef {object} Item  one message (text) or tool-call group, in order of appearance
 * @property {string} id
 * @property {"message" | "tool_calls" | string} kind
 * @property {string} role
 * @property {string} status
 * @property {string} text  the text accumulated so far (every text part, joined)
 * @property {string} refusal
 * @property {ToolCall[]} toolCalls
 * @property {string | null} runId  run, response or completion id the item belongs to
 */

/**
 * @typedef {object} TimelineEntry
 * @property {string} status  a run/response status, or an event such as "runcast.upstream_error"
 * @property {number} at  local clock (ms)
 * @property {number | null} seq
 * @property {string | null} runId
 * @property {boolean} fromSnapshot
 */

/**
 * @typedef {object} ChannelState
 * @property {Protocol} protocol
 * @property {string | null} runId  current run / response / completion id
 * @property {string | null} status  its latest status
 * @property {TimelineEntry[]} timeline
 * @property {Item[]} items
 * @property {unknown} usage
 * @property {unknown} error
 * @property {boolean} done  a `done` / `[DONE]` arrived (the latest stream ended)
 * @property {boolean} finished  the run reached a final state: nothing more will come
 */

/**
 * A reducer folds one protocol's events into a `ChannelState`.
 * @typedef {object} Reducer
 * @property {ChannelState} state
 * @property {(name: string, data: unknown, seq: number | null) => void} apply
 * @property {(snapshot: unknown, seq: number) => void} load
 */

/**
 * @typedef {object} ConnectionInfo
 * @property {"idle" | "connecting" | "open" | "reconnecting" | "ended" | "failed"} state
 * @property {TransportName} transport  what was asked for
 * @property {string} via  "eventsource" | "fetch" | "websocket"
 * @property {number} cuts  connections lost before the end
 * @property {number} resumes  connections re-established after a cut
 * @property {number | null} lastSeq  the last seq applied
 * @property {string | null} lastId  its position, `<epoch>-<seq>` (what a resume sends)
 * @property {number} duplicates  events dropped because already applied
 * @property {string | null} reason  why the last connection ended
 */

/**
 * @typedef {object} StreamOptions
 * @property {ChannelKind} kind
 * @property {string} id  run id, thread id, ..., or the channel name for kind "channel"
 * @property {string} [baseUrl]  runcast's origin; default: this page's
 * @property {TransportName} [transport]  default "sse"
 * @property {string | (() => string | null | Promise<string | null>) | null} [token]
 * @property {boolean} [snapshot]  start with the snapshot (default true)
 * @property {number | string | null} [since]  start after this position (`<epoch>-<seq>`, or 0
 *   for the start) instead (replay from history)
 * @property {Protocol} [protocol]  default: by kind ("auto" for named channels)
 * @property {boolean} [stopOnDone]  end at a final `done` (default: run, response and chat kinds)
 * @property {string[]} [eventNames]  extra SSE event names EventSource should listen for
 * @property {number[]} [retryDelays]  reconnect delays in ms (the last one repeats)
 * @property {number} [maxFailures]  connection attempts in a row that never open before the stream
 *   fails for good (default: never; 20 is some 80 s with the default delays)
 * @property {() => number} [now]  clock for timings (default Date.now)
 */

/** @type {Record<ChannelKind, {path: string, protocol: Protocol, stopOnDone: boolean}>} */
export const CHANNEL_KINDS = {
  run: { path: "runs", protocol: "assistants", stopOnDone: true },
  thread: { path: "threads", protocol: "assistants", stopOnDone: false },
  response: { path: "responses", protocol: "responses", stopOnDone: true },
  conversation: { path: "conversations", protocol: "responses", stopOnDone: false },
  chat: { path: "chat", protocol: "chat", stopOnDone: true },
  channel: { path: "channels", protocol: "auto", stopOnDone: false },
};

/** Events runcast adds on channels (README, "Other events runcast adds on channels"). */
export const RUNCAST_EVENTS = [
  "runcast.snapshot",
  "runcast.history_lost",
  "runcast.lagged",
  "runcast.shutdown",
  "runcast.degraded",
  "runcast.restored",
  "runcast.upstream_error",
  "runcast.upstream_lost",
  "runcast.recovered",
  "runcast.tool_call.started",
  "runcast.tool_call.completed",
  "runcast.tool_call.failed",
  "runcast.tool_automation.cancelled",
  "runcast.tool_automation.superseded",
  "runcast.tool_automation.rejected",
  "runcast.tool_automation.skipped",
  "runcast.tool_automation.unknown",
];

const DONE_DATA = "[DONE]";

/** @param {unknown} value @returns {Record<string, any>} */
function obj(value) {
  return value !== null && typeof value === "object" ? /** @type {Record<string, any>} */ (value) : {};
}

/** @param {unknown} value @returns {string} */
function str(value) {
  return typeof value === "string" ? value : "";
}

/** @param {Protocol} protocol @returns {ChannelState} */
function emptyState(protocol) {
  return {
    protocol,
    runId: null,
    status: null,
    timeline: [],
    items: [],
    usage: null,
    error: null,
    done: false,
    finished: false,
  };
}

/** @param {string} id @param {string} kind @param {string | null} runId @returns {Item} */
function newItem(id, kind, runId) {
  return { id, kind, role: "assistant", status: "in_progress", text: "", refusal: "", toolCalls: [], runId };
}

/** @param {string} id @param {number} index @param {number} at @returns {ToolCall} */
function newCall(id, index, at) {
  return {
    id,
    index,
    type: "function",
    name: "",
    arguments: "",
    output: null,
    status: "running",
    firstSeenAt: at,
    argumentsDoneAt: null,
    outputAt: null,
    durationMs: null,
    error: null,
  };
}

/**
 * Items by id, kept in order of first appearance.
 * @param {ChannelState} state @param {string} id @param {() => Item} make @returns {Item}
 */
function itemFor(state, id, make) {
  let item = state.items.find((it) => it.id === id);
  if (item === undefined) {
    item = make();
    state.items.push(item);
  }
  return item;
}

/** @param {ChannelState} state @param {string} status @param {number | null} seq @param {number} at */
function mark(state, status, seq, at) {
  const last = state.timeline[state.timeline.length - 1];
  if (last !== undefined && last.status === status && last.runId === state.runId) return;
  state.timeline.push({ status, at, seq, runId: state.runId, fromSnapshot: false });
}

/** @param {ChannelState} state @param {string} name @param {unknown} data @param {number} at */
function runcastEvent(state, name, data, at) {
  const d = obj(data);
  if (name.startsWith("runcast.tool_call.")) {
    for (const item of state.items) {
      const call = item.toolCalls.find((c) => c.id === d.tool_call_id);
      if (call === undefined) continue;
      if (typeof d.duration_ms === "number") call.durationMs = d.duration_ms;
      if (name === "runcast.tool_call.failed") {
        call.status = "failed";
        call.error = str(d.error) || "failed";
      }
    }
    return;
  }
  if (name === "runcast.upstream_lost") {
    // The stream was cut upstream and will not go on (README, HTTP API): as the server's snapshot
    // does, it is done and shows this error unless the stream had its own, and a response found
    // ended with no event of its own (cancelled) takes that status.
    state.error ??= d.error ?? null;
    if (typeof d.status === "string" && d.status) state.status = d.status;
    state.done = true;
    state.finished = true;
  }
  if (name === "runcast.upstream_error" || name === "runcast.upstream_lost" || name.startsWith("runcast.tool_automation.")) {
    state.timeline.push({ status: name, at, seq: null, runId: state.runId, fromSnapshot: false });
  }
}

// -- Assistants: run and thread channels (spec: ../shared/spec/assistants-stream.md) -------------

const FINAL_RUN = new Set(["completed", "failed", "cancelled", "expired", "incomplete"]);

/** @type {string[]} */
export const ASSISTANTS_EVENTS = [
  "thread.created",
  ...["created", "queued", "in_progress", "requires_action", "completed", "incomplete", "failed",
    "cancelling", "cancelled", "expired"].map((s) => `thread.run.${s}`),
  ...["created", "in_progress", "delta", "completed", "failed", "cancelled", "expired"].map(
    (s) => `thread.run.step.${s}`,
  ),
  ...["created", "in_progress", "delta", "completed", "incomplete"].map((s) => `thread.message.${s}`),
  "error",
  "done",
];

/**
 * @param {{now?: () => number}} [options]
 * @returns {Reducer}
 */
export function assistantsReducer(options = {}) {
  const now = options.now ?? Date.now;
  const r = {
    state: emptyState("assistants"),
    /** @type {Map<string, Map<number, string>>} text parts by message id, then part index */
    parts: new Map(),
    /** @param {string} name @param {unknown} data @param {number | null} seq */
    apply(name, data, seq) {
      const at = now();
      const state = r.state;
      const d = obj(data);
      if (name.startsWith("runcast.")) return runcastEvent(state, name, data, at);
      if (name === "done" || data === DONE_DATA) {
        state.done = true;
        if (state.status !== null && FINAL_RUN.has(state.status)) state.finished = true;
        if (state.error !== null) state.finished = true;
        return;
      }
      if (name === "error") {
        state.error = d;
        mark(state, "error", seq, at);
        return;
      }
      if (name.startsWith("thread.run.step.")) return r.step(name, d, at);
      if (name.startsWith("thread.run.")) {
        if (d.id !== state.runId) {
          state.runId = str(d.id) || null;
          state.finished = false;
          state.error = null;
        }
        state.done = false;
        state.status = str(d.status) || null;
        if (d.usage) state.usage = d.usage;
        mark(state, str(d.status) || name.slice("thread.run.".length), seq, at);
        if (state.status === "requires_action") {
          const calls = obj(obj(d.required_action).submit_tool_outputs).tool_calls;
          for (const wanted of Array.isArray(calls) ? calls : []) {
            for (const item of state.items) {
              const call = item.toolCalls.find((c) => c.id === obj(wanted).id);
              if (call !== undefined && call.output === null) {
                call.status = "waiting";
                call.argumentsDoneAt ??= at;
              }
            }
          }
        }
        return;
      }
      if (name === "thread.message.delta") return r.messageDelta(d);
      if (name.startsWith("thread.message.")) {
        return r.message(d, name === "thread.message.completed" || name === "thread.message.incomplete");
      }
    },
    /** @param {unknown} snapshot @param {number} _seq */
    load(snapshot, _seq) {
      const at = now();
      const s = obj(snapshot);
      r.state = emptyState("assistants");
      r.parts = new Map();
      const state = r.state;
      state.runId = str(s.run_id) || null;
      state.status = str(s.status) || null;
      state.usage = s.usage ?? null;
      state.error = s.error ?? null;
      state.done = Boolean(s.done);
      state.finished = state.done && state.status !== null && FINAL_RUN.has(state.status);
      if (state.status !== null) {
        state.timeline.push({ status: state.status, at, seq: _seq, runId: state.runId, fromSnapshot: true });
      }
      const messages = Array.isArray(s.messages) ? s.messages.map(obj) : [];
      const placed = new Set();
      for (const step of Array.isArray(s.steps) ? s.steps.map(obj) : []) {
        const details = obj(step.step_details);
        if (details.type === "message_creation") {
          const id = obj(details.message_creation).message_id;
          const message = messages.find((m) => m.id === id);
          if (message !== undefined && !placed.has(id)) {
            placed.add(id);
            r.message(message, true);
          }
        } else {
          r.step("thread.run.step.snapshot", step, at);
        }
      }
      for (const message of messages) if (!placed.has(message.id)) r.message(message, true);
    },
    /**
     * A full message; its content replaces the deltas only when final (or when none came yet).
     * @param {Record<string, any>} m @param {boolean} final
     */
    message(m, final) {
      const item = itemFor(r.state, str(m.id), () => newItem(str(m.id), "message", str(m.run_id) || r.state.runId));
      item.role = str(m.role) || item.role;
      item.status = str(m.status) || item.status;
      if (Array.isArray(m.content)) {
        /** @type {Map<number, string>} */
        const parts = new Map();
        m.content.forEach((/** @type {unknown} */ part, /** @type {number} */ i) => {
          const p = obj(part);
          if (p.type === "text") parts.set(i, str(obj(p.text).value));
          else if (p.type === "refusal") item.refusal = str(p.refusal);
        });
        if (final || !r.parts.has(item.id)) {
          r.parts.set(item.id, parts);
          item.text = [...parts.values()].join("");
        }
      }
    },
    /** @param {Record<string, any>} d */
    messageDelta(d) {
      const id = str(d.id);
      const item = itemFor(r.state, id, () => newItem(id, "message", r.state.runId));
      const delta = obj(d.delta);
      if (delta.role) item.role = str(delta.role);
      let parts = r.parts.get(id);
      if (parts === undefined) r.parts.set(id, (parts = new Map()));
      for (const part of Array.isArray(delta.content) ? delta.content.map(obj) : []) {
        const index = typeof part.index === "number" ? part.index : 0;
        if (part.type === "text") parts.set(index, (parts.get(index) ?? "") + str(obj(part.text).value));
        else if (part.type === "refusal") item.refusal += str(part.refusal);
      }
      item.text = [...[...parts.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1])].join("");
    },
    /** @param {string} name @param {Record<string, any>} d @param {number} at */
    step(name, d, at) {
      const details = obj(name === "thread.run.step.delta" ? obj(d.delta).step_details : d.step_details);
      if (details.type !== "tool_calls") return;
      const id = str(d.id);
      const item = itemFor(r.state, id, () => newItem(id, "tool_calls", str(d.run_id) || r.state.runId));
      if (d.status) item.status = str(d.status);
      const final = name !== "thread.run.step.delta";
      for (const tc of Array.isArray(details.tool_calls) ? details.tool_calls.map(obj) : []) {
        const index = typeof tc.index === "number" ? tc.index : item.toolCalls.length;
        let call = item.toolCalls.find((c) => c.index === index || (tc.id && c.id === tc.id));
        if (call === undefined) {
          call = newCall(str(tc.id), index, at);
          item.toolCalls.push(call);
        }
        if (tc.id) call.id = str(tc.id);
        if (tc.type) call.type = str(tc.type);
        const fn = obj(tc.function ?? tc[call.type]);
        if (fn.name) call.name = str(fn.name);
        if (final) {
          if (typeof fn.arguments === "string") call.arguments = fn.arguments;
          if (typeof fn.output === "string") call.output = fn.output;
        } else {
          call.arguments += str(fn.arguments);
          if (typeof fn.output === "string") call.output = (call.output ?? "") + fn.output;
        }
        if (call.output !== null && call.outputAt === null) {
          call.outputAt = at;
          call.argumentsDoneAt ??= at;
        }
        if (item.status === "completed" && call.status !== "failed") call.status = "completed";
        else if (item.status === "failed") call.status = "failed";
      }
    },
  };
  return r;
}

// -- Responses API: response and conversation channels (responses-and-chat.md §1) ---------------

const RESPONSE_STATUS = new Set([
  "response.created",
  "response.queued",
  "response.in_progress",
  "response.completed",
  "response.failed",
  "response.incomplete",
]);
const FINAL_RESPONSE = new Set(["completed", "failed", "incomplete", "cancelled"]);

/** @type {string[]} */
export const RESPONSES_EVENTS = [
  ...RESPONSE_STATUS,
  ...["added", "done"].map((s) => `response.output_item.${s}`),
  ...["added", "done"].map((s) => `response.content_part.${s}`),
  ...["delta", "done", "annotation.added"].map((s) => `response.output_text.${s}`),
  ...["delta", "done"].map((s) => `response.refusal.${s}`),
  ...["delta", "done"].map((s) => `response.function_call_arguments.${s}`),
  ...["delta", "done"].map((s) => `response.reasoning_summary_text.${s}`),
  "error",
  "keepalive",
  "done",
];

/**
 * Responses stream events keyed on the JSON `type` (servers differ on the `event:` line);
 * output items by `item_id`, text parts by `content_index`, arguments by item.
 * @param {{now?: () => number}} [options]
 * @returns {Reducer}
 */
export function responsesReducer(options = {}) {
  const now = options.now ?? Date.now;
  const r = {
    state: emptyState("responses"),
    /** @type {Map<string, Map<number, string>>} */
    parts: new Map(),
    /** @param {string} name @param {unknown} data @param {number | null} seq */
    apply(name, data, seq) {
      const at = now();
      const state = r.state;
      const d = obj(data);
      if (name.startsWith("runcast.")) return runcastEvent(state, name, data, at);
      if (data === DONE_DATA || name === "done") {
        state.done = true;
        if (state.status !== null && FINAL_RESPONSE.has(state.status)) state.finished = true;
        return;
      }
      const type = str(d.type) || name;
      if (RESPONSE_STATUS.has(type)) {
        const response = obj(d.response);
        const id = str(response.id) || state.runId;
        if (id !== state.runId) state.error = null; // the previous response's, on a conversation
        state.runId = id;
        state.status = str(response.status) || type.slice("response.".length);
        if (response.usage) state.usage = response.usage;
        if (response.error) state.error = response.error;
        mark(state, state.status, seq, at);
        if (FINAL_RESPONSE.has(state.status)) {
          // The final event is the end of a Responses stream: OpenAI sends no [DONE] (§1.1).
          if (Array.isArray(response.output)) {
            response.output.forEach((/** @type {unknown} */ it) => r.item(obj(it), at, true));
          }
          state.finished = true;
          state.done = true;
        } else {
          state.finished = false;
          state.done = false;
        }
        return;
      }
      if (type === "error") {
        // Nested on the wire ({"error": {...}}), flat in the spec (§1.5): keep whichever came.
        state.error = d.error ?? { code: d.code ?? null, message: d.message ?? null, param: d.param ?? null };
        mark(state, "error", seq, at);
        return;
      }
      if (type === "response.output_item.added" || type === "response.output_item.done") {
        return r.item(obj(d.item), at, type.endsWith(".done"));
      }
      const item = state.items.find((it) => it.id === str(d.item_id));
      if (item === undefined) return;
      const index = typeof d.content_index === "number" ? d.content_index : 0;
      let parts = r.parts.get(item.id);
      if (parts === undefined) r.parts.set(item.id, (parts = new Map()));
      if (type === "response.output_text.delta") parts.set(index, (parts.get(index) ?? "") + str(d.delta));
      else if (type === "response.output_text.done") parts.set(index, str(d.text));
      else if (type === "response.refusal.delta") item.refusal += str(d.delta);
      else if (type === "response.refusal.done") item.refusal = str(d.refusal);
      else if (type === "response.function_call_arguments.delta" && item.toolCalls[0]) {
        item.toolCalls[0].arguments += str(d.delta);
      } else if (type === "response.function_call_arguments.done" && item.toolCalls[0]) {
        item.toolCalls[0].arguments = str(d.arguments);
        item.toolCalls[0].argumentsDoneAt ??= at;
      }
      item.text = [...[...parts.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1])].join("");
    },
    /** @param {unknown} snapshot @param {number} _seq */
    load(snapshot, _seq) {
      const at = now();
      const s = obj(snapshot);
      const response = obj(s.response ?? s);
      r.state = emptyState("responses");
      r.parts = new Map();
      r.state.runId = str(response.id) || null;
      r.state.status = str(response.status) || null;
      r.state.usage = response.usage ?? null;
      r.state.error = response.error ?? null;
      if (r.state.status !== null) {
        r.state.timeline.push({ status: r.state.status, at, seq: _seq, runId: r.state.runId, fromSnapshot: true });
        r.state.finished = FINAL_RESPONSE.has(r.state.status);
      }
      // The server's snapshot says whether the stream is over; without it a finished channel's
      // WebSocket, closed by the server, was reconnected to without end.
      r.state.done = Boolean(s.done) || r.state.finished;
      for (const it of Array.isArray(response.output) ? response.output : []) r.item(obj(it), at, true);
    },
    /** @param {Record<string, any>} it @param {number} at @param {boolean} whole */
    item(it, at, whole) {
      // Item ids (msg_..., fc_...) are unique across the responses of a conversation.
      const id = str(it.id) || `${r.state.runId}/${r.state.items.length}`;
      const kind = it.type === "function_call" ? "tool_calls" : str(it.type) || "message";
      const item = itemFor(r.state, id, () => newItem(id, kind, r.state.runId));
      item.role = str(it.role) || item.role;
      item.status = str(it.status) || item.status;
      if (it.type === "function_call") {
        let call = item.toolCalls[0];
        if (call === undefined) item.toolCalls.push((call = newCall(str(it.call_id), 0, at)));
        call.id = str(it.call_id) || call.id;
        call.name = str(it.name) || call.name;
        if (whole || it.arguments) call.arguments = str(it.arguments) || call.arguments;
        if (whole && it.status === "completed") {
          call.status = "completed";
          call.argumentsDoneAt ??= at;
        }
      }
      if (Array.isArray(it.content) && (whole || it.content.length > 0)) {
        /** @type {Map<number, string>} */
        const parts = new Map();
        it.content.forEach((/** @type {unknown} */ part, /** @type {number} */ i) => {
          const p = obj(part);
          if (p.type === "output_text") parts.set(i, str(p.text));
          else if (p.type === "refusal") item.refusal = str(p.refusal);
        });
        r.parts.set(item.id, parts);
        item.text = [...parts.values()].join("");
      }
    },
  };
  return r;
}

// -- Chat Completions chunks (responses-and-chat.md §4, §7.5) -------------------------------------

/**
 * Chunks folded per (completion id, choice index); tool calls per `index`, else by `id`, else
 * the last open call; integers are never added; `object: ""` chunks are skipped.
 * @param {{now?: () => number}} [options]
 * @returns {Reducer}
 */
export function chatReducer(options = {}) {
  const now = options.now ?? Date.now;
  const r = {
    state: emptyState("chat"),
    /** @param {string} name @param {unknown} data @param {number | null} seq */
    apply(name, data, seq) {
      const at = now();
      const state = r.state;
      if (name.startsWith("runcast.")) return runcastEvent(state, name, data, at);
      if (data === DONE_DATA || name === "done") {
        state.done = true;
        state.finished = true;
        return;
      }
      const chunk = obj(data);
      if (chunk.error) {
        state.error = chunk.error;
        mark(state, "error", seq, at);
        return;
      }
      if (chunk.object === "") return;
      if (chunk.usage) state.usage = chunk.usage;
      if (chunk.id && chunk.id !== state.runId) {
        // A named channel's next completion.
        state.runId = str(chunk.id);
        state.error = null;
        state.done = state.finished = false;
        state.status = "in_progress";
        mark(state, "in_progress", seq, at);
      }
      for (const choice of Array.isArray(chunk.choices) ? chunk.choices.map(obj) : []) {
        const item = r.choice(choice.index);
        const delta = obj(choice.delta);
        if (delta.role) item.role = str(delta.role);
        item.text += str(delta.content);
        item.refusal += str(delta.refusal);
        for (const tc of Array.isArray(delta.tool_calls) ? delta.tool_calls.map(obj) : []) {
          let call;
          if (typeof tc.index === "number") call = item.toolCalls.find((c) => c.index === tc.index);
          else if (tc.id) call = item.toolCalls.find((c) => c.id === tc.id);
          else call = item.toolCalls[item.toolCalls.length - 1];
          if (call === undefined) {
            const index = typeof tc.index === "number" ? tc.index : item.toolCalls.length;
            item.toolCalls.push((call = newCall(str(tc.id), index, at)));
          }
          if (tc.id) call.id = str(tc.id);
          const fn = obj(tc.function);
          if (fn.name) call.name = str(fn.name);
          call.arguments += str(fn.arguments);
        }
        if (choice.finish_reason) {
          item.status = str(choice.finish_reason);
          for (const call of item.toolCalls) {
            call.argumentsDoneAt ??= at;
            if (call.status === "running") call.status = "waiting";
          }
          state.status = str(choice.finish_reason);
          mark(state, `finish_reason: ${choice.finish_reason}`, seq, at);
        }
      }
    },
    /** @param {unknown} snapshot @param {number} _seq */
    load(snapshot, _seq) {
      const at = now();
      const s = obj(snapshot);
      // The server's is {completion, error, done}; a bare chat.completion is taken too.
      const c = obj(s.completion ?? s);
      r.state = emptyState("chat");
      r.state.runId = str(c.id) || null;
      r.state.usage = c.usage ?? null;
      r.state.error = s.error ?? null;
      r.state.done = r.state.finished = Boolean(s.done);
      for (const choice of Array.isArray(c.choices) ? c.choices.map(obj) : []) {
        const item = r.choice(choice.index);
        const message = obj(choice.message ?? choice.delta);
        item.role = str(message.role) || item.role;
        item.text = str(message.content);
        item.refusal = str(message.refusal);
        if (choice.finish_reason) r.state.status = item.status = str(choice.finish_reason);
        const calls = Array.isArray(message.tool_calls) ? message.tool_calls.map(obj) : [];
        calls.forEach((tc, i) => {
          const call = newCall(str(tc.id), typeof tc.index === "number" ? tc.index : i, at);
          call.name = str(obj(tc.function).name);
          call.arguments = str(obj(tc.function).arguments);
          item.toolCalls.push(call);
        });
      }
      if (r.state.status !== null) {
        r.state.timeline.push({ status: r.state.status, at, seq: _seq, runId: r.state.runId, fromSnapshot: true });
      }
    },
    /** @param {unknown} index @returns {Item} */
    choice(index) {
      const id = `${r.state.runId}/${typeof index === "number" ? index : 0}`;
      return itemFor(r.state, id, () => newItem(id, "message", r.state.runId));
    },
  };
  return r;
}

/**
 * Named channels carry whatever was published: pick the reducer from the first event that
 * tells (`thread.*`, `response.*`, a `chat.completion.chunk`), Assistants until then.
 * @param {{now?: () => number}} [options]
 * @returns {Reducer}
 */
export function autoReducer(options = {}) {
  /** @type {Reducer | null} */
  let inner = null;
  /** @type {Reducer} */
  const fallback = assistantsReducer(options);
  /** @param {string} name @param {unknown} data @returns {Reducer} */
  const pick = (name, data) => {
    if (inner !== null) return inner;
    const type = str(obj(data).type) || name;
    if (type.startsWith("response.")) inner = responsesReducer(options);
    else if (obj(data).object === "chat.completion.chunk") inner = chatReducer(options);
    else if (name.startsWith("thread.")) inner = fallback;
    return inner ?? fallback;
  };
  return {
    get state() {
      return (inner ?? fallback).state;
    },
    apply(name, data, seq) {
      pick(name, data).apply(name, data, seq);
    },
    load(snapshot, seq) {
      if (snapshot === null || snapshot === undefined) {
        // A channel subscribed before its first stream: nothing tells the kind yet.
        (inner ?? fallback).load(snapshot, seq);
        return;
      }
      const s = obj(snapshot);
      const chat = s.completion !== undefined || s.object === "chat.completion";
      const guess = chat ? "x" : s.object === "response" || s.response ? "response." : "thread.";
      pick(guess, guess === "x" ? { object: "chat.completion.chunk" } : {}).load(snapshot, seq);
    },
  };
}

/** @type {Record<Protocol, (options?: {now?: () => number}) => Reducer>} */
export const REDUCERS = {
  assistants: assistantsReducer,
  responses: responsesReducer,
  chat: chatReducer,
  auto: autoReducer,
};

/** @type {Record<Protocol, string[]>} */
const EVENT_NAMES = {
  assistants: ASSISTANTS_EVENTS,
  // A data-only server's events (LiteLLM) have no name: EventSource calls them "message".
  responses: [...RESPONSES_EVENTS, "message"],
  chat: ["message", "done", "error"],
  auto: [...ASSISTANTS_EVENTS, ...RESPONSES_EVENTS, "message"],
};

// -- transports ------------------------------------------------------------------------------------

/**
 * What a transport reports. `cut` kinds: "network" (lost after opening, or the body ended),
 * "refused" (never opened: EventSource/WebSocket do not say why), "http" (fetch saw a status);
 * `code` is a WebSocket's close code.
 * @typedef {object} TransportHandlers
 * @property {() => void} open
 * @property {(id: string | null, name: string, data: unknown) => void} message
 * @property {(kind: "network" | "refused" | "http", status: number | null, message: string, code?: number) => void} cut
 */

/** @typedef {{close: () => void, via: string}} Transport */

/** @param {string} text @returns {unknown} */
function parseData(text) {
  if (text === DONE_DATA) return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** @typedef {{epoch: string, seq: number}} Position */

/** @param {string | number | null | undefined} id @returns {Position | null} */
export function parsePosition(id) {
  if (typeof id === "number") return Number.isInteger(id) && id >= 0 ? { epoch: "", seq: id } : null;
  const m = id ? /^(?:([0-9A-Za-z_.]{1,64})-)?(\d{1,15})$/.exec(id) : null;
  return m ? { epoch: m[1] ?? "", seq: Number(m[2]) } : null;
}

/** @param {Position} p @returns {string} */
function formatPosition(p) {
  return p.epoch ? `${p.epoch}-${p.seq}` : String(p.seq);
}

/** @param {string} url @param {string[]} names @param {TransportHandlers} on @returns {Transport} */
function eventSourceTransport(url, names, on) {
  const source = new EventSource(url);
  let opened = false;
  let closed = false;
  const close = () => {
    closed = true;
    source.close();
  };
  source.onopen = () => {
    opened = true;
    on.open();
  };
  source.onerror = (e) => {
    // A server-sent `event: error` (an upstream's error event) reaches this handler too, as a
    // MessageEvent: it is an event for the listeners, not a broken connection.
    if (closed || e instanceof MessageEvent) return;
    // CONNECTING: the connection broke (or the body ended) and the browser would retry; we resume
    // ourselves with ?since. CLOSED: the answer was not an event stream (204, 4xx, 5xx).
    const refused = source.readyState === EventSource.CLOSED && !opened;
    close();
    on.cut(refused ? "refused" : "network", null, refused ? "connection refused" : "connection lost");
  };
  /** @param {Event} e */
  const listener = (e) => {
    if (closed || !(e instanceof MessageEvent)) return;
    on.message(e.lastEventId || null, e.type, parseData(String(e.data)));
  };
  for (const name of new Set(names)) source.addEventListener(name, listener);
  return { close, via: "eventsource" };
}

/**
 * SSE over fetch (WHATWG "interpreting an event stream": lines end at CR, LF or CRLF).
 * @param {string} url @param {Record<string, string>} headers @param {TransportHandlers} on
 * @returns {Transport}
 */
function fetchTransport(url, headers, on) {
  const abort = new AbortController();
  let closed = false;
  const run = async () => {
    let response;
    try {
      response = await fetch(url, { headers: { Accept: "text/event-stream", ...headers }, signal: abort.signal, cache: "no-store" });
    } catch (err) {
      if (!closed) on.cut("network", null, String(err));
      return;
    }
    if (response.status !== 200 || response.body === null) {
      const message = await errorMessage(response);
      if (!closed) on.cut("http", response.status, message);
      return;
    }
    on.open();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let pendingCR = false;
    /** @type {{id: string | undefined, name: string, data: string[]}} */
    let event = { id: undefined, name: "", data: [] };
    /** @param {string} line */
    const onLine = (line) => {
      if (line === "") {
        if (event.data.length > 0) {
          on.message(event.id ?? null, event.name || "message", parseData(event.data.join("\n")));
        }
        event = { id: undefined, name: "", data: [] };
        return;
      }
      if (line.startsWith(":")) return;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") event.data.push(value);
      else if (field === "event") event.name = value;
      else if (field === "id" && !value.includes("\0")) event.id = value;
    };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || closed) break;
        buffer += value;
        let start = 0;
        for (let i = 0; i < buffer.length; i++) {
          const c = buffer[i];
          if (c === "\n" && pendingCR) {
            pendingCR = false;
            start = i + 1;
            continue;
          }
          pendingCR = false;
          if (c === "\r" || c === "\n") {
            onLine(buffer.slice(start, i));
            pendingCR = c === "\r";
            start = i + 1;
          }
        }
        buffer = buffer.slice(start);
      }
    } catch (err) {
      if (!closed) on.cut("network", null, String(err));
      return;
    }
    if (!closed) on.cut("network", null, "the stream ended");
  };
  void run();
  return {
    close: () => {
      closed = true;
      abort.abort();
    },
    via: "fetch",
  };
}

/** @param {string} url @param {TransportHandlers} on @returns {Transport} */
function webSocketTransport(url, on) {
  const ws = new WebSocket(url);
  let opened = false;
  let closed = false;
  ws.onopen = () => {
    opened = true;
    on.open();
  };
  ws.onmessage = (e) => {
    if (closed || typeof e.data !== "string") return;
    const frame = obj(parseData(e.data));
    const id = typeof frame.seq === "number" ? formatPosition({ epoch: str(frame.epoch), seq: frame.seq }) : null;
    on.message(id, str(frame.event), frame.data);
  };
  ws.onclose = (e) => {
    if (closed) return;
    closed = true;
    on.cut(opened ? "network" : "refused", null, `closed (${e.code})`, e.code);
  };
  return {
    close: () => {
      closed = true;
      ws.close();
    },
    via: "websocket",
  };
}

/** @param {Response} response @returns {Promise<string>} */
async function errorMessage(response) {
  try {
    const body = obj(await response.json());
    return str(obj(body.error).message) || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

/** @param {string} base @param {string} path @returns {URL} */
function resolve(base, path) {
  const origin = base || (typeof location !== "undefined" ? location.href : "http://localhost/");
  return new URL(path, origin);
}

/**
 * The URL of a channel: `/streams/{runs|threads|responses|conversations|chat|channels}/{id}`.
 * @param {ChannelKind} kind @param {string} id @param {string} [baseUrl]
 */
export function channelUrl(kind, id, baseUrl = "") {
  const spec = CHANNEL_KINDS[kind];
  if (spec === undefined) throw new TypeError(`unknown channel kind: ${kind}`);
  return resolve(baseUrl, `/streams/${spec.path}/${encodeURIComponent(id)}`).href;
}

// -- the stream ------------------------------------------------------------------------------------

const DEFAULT_DELAYS = [100, 250, 500, 1000, 2000, 5000];
const DEFAULT_MAX_FAILURES = Infinity; // a page must outlive an outage of the gateway

/**
 * Notices the hub adds to one subscription (README, "Subscribing"): never numbered, whatever id
 * an EventSource gives them (its `lastEventId` is the last id it saw, carried over).
 */
const NOTICES = new Set(["runcast.history_lost", "runcast.lagged", "runcast.shutdown", "runcast.degraded", "runcast.restored"]);

export class RuncastStream extends EventTarget {
  /** @type {Required<Pick<StreamOptions, "kind" | "id" | "transport" | "snapshot" | "stopOnDone">> & StreamOptions} */
  #options;
  /** @type {Reducer} */
  #reducer;
  /** @type {Transport | null} */
  #transport = null;
  /** @type {Position | null} */
  #position;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #timer = null;
  /** connections in a row that brought nothing new: the index into the retry delays */
  #attempt = 0;
  /** connection attempts in a row that never opened */
  #failures = 0;
  /** @type {number | null} the wait a `runcast.shutdown` asked for */
  #retryAfter = null;
  /** what the current connection did */
  #conn = { opened: false, fresh: false, lagged: false };
  #everOpened = false;
  #cut = false;
  /** @type {ConnectionInfo} */
  #info;

  /** @param {StreamOptions} options */
  constructor(options) {
    super();
    const spec = CHANNEL_KINDS[options.kind];
    if (spec === undefined) throw new TypeError(`unknown channel kind: ${options.kind}`);
    this.#options = {
      transport: "sse",
      snapshot: true,
      stopOnDone: spec.stopOnDone,
      ...options,
    };
    const protocol = options.protocol ?? spec.protocol;
    this.#reducer = REDUCERS[protocol]({ now: options.now });
    this.#position = parsePosition(options.since);
    this.#info = {
      state: "idle",
      transport: this.#options.transport,
      via: "",
      cuts: 0,
      resumes: 0,
      lastSeq: this.#position?.seq ?? null,
      lastId: this.#position ? formatPosition(this.#position) : null,
      duplicates: 0,
      reason: null,
    };
    this.#connect();
  }

  /** The accumulated state: status, timeline, items (text and tool calls). */
  get state() {
    return this.#reducer.state;
  }

  /** @returns {ConnectionInfo} */
  get connection() {
    return { ...this.#info };
  }

  /** Stop for good (no reconnect); `end` is dispatched with reason "closed". */
  close() {
    this.#finish("closed");
  }

  #stopped() {
    return this.#info.state === "ended" || this.#info.state === "failed";
  }

  /** @param {ConnectionInfo["state"]} state @param {string | null} [reason] */
  #setState(state, reason = null) {
    this.#info.state = state;
    if (reason !== null) this.#info.reason = reason;
    this.dispatchEvent(new CustomEvent("connection", { detail: this.connection }));
  }

  async #url() {
    const o = this.#options;
    const url = new URL(channelUrl(o.kind, o.id, o.baseUrl));
    if (this.#position !== null) url.searchParams.set("since", formatPosition(this.#position));
    else if (o.snapshot) url.searchParams.set("snapshot", "1");
    const token = typeof o.token === "function" ? await o.token() : o.token;
    return { url, token: token ?? null };
  }

  async #connect() {
    if (this.#stopped()) return;
    this.#setState(this.#cut ? "reconnecting" : "connecting");
    this.#conn = { opened: false, fresh: false, lagged: false };
    let target;
    try {
      target = await this.#url();
    } catch (err) {
      // The token function failed: reported and retried like a connection that failed.
      return this.#lost("network", null, `token: ${err}`);
    }
    if (this.#stopped()) return;
    const { url, token } = target;
    const o = this.#options;
    /** @type {TransportHandlers} */
    const on = {
      open: () => this.#opened(),
      message: (id, name, data) => this.#message(id, name, data),
      cut: (kind, status, message, code) => void this.#lost(kind, status, message, code),
    };
    if (o.transport === "websocket") {
      if (token !== null) url.searchParams.set("token", token);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      this.#transport = webSocketTransport(url.href, on);
    } else if (o.transport === "sse" && typeof EventSource !== "undefined") {
      if (token !== null) url.searchParams.set("token", token);
      const protocol = o.protocol ?? CHANNEL_KINDS[o.kind].protocol;
      const names = [...EVENT_NAMES[protocol], ...RUNCAST_EVENTS, ...(o.eventNames ?? [])];
      this.#transport = eventSourceTransport(url.href, names, on);
    } else {
      /** @type {Record<string, string>} */
      const headers = token !== null ? { Authorization: `Bearer ${token}` } : {};
      this.#transport = fetchTransport(url.href, headers, on);
    }
    this.#info.via = this.#transport.via;
  }

  #opened() {
    if (this.#cut) this.#info.resumes += 1;
    this.#cut = false;
    this.#everOpened = true;
    this.#conn.opened = true;
    this.#failures = 0;
    this.#setState("open");
  }

  /** @param {Position} position */
  #moveTo(position) {
    this.#position = position;
    this.#info.lastSeq = position.seq;
    this.#info.lastId = formatPosition(position);
  }

  /** @param {string | null} id @param {string} name @param {unknown} data */
  #message(id, name, data) {
    if (this.#stopped()) return;
    const position = NOTICES.has(name) ? null : parsePosition(id);
    if (name === "runcast.snapshot") {
      const d = obj(data);
      const at = typeof d.seq === "number" ? { epoch: str(d.epoch), seq: d.seq } : position ?? { epoch: "", seq: 0 };
      // At seq 0 the channel's log is empty (new, or lost in a restart of the broker): loaded,
      // its snapshot would blank what is shown for nothing; `historylost` told the app.
      if (at.seq > 0) this.#reducer.load(d.snapshot, at.seq);
      this.#conn.fresh = true;
      this.#moveTo(at);
      this.dispatchEvent(new CustomEvent("snapshot", { detail: { seq: at.seq, id: formatPosition(at) } }));
      this.#updated();
      return;
    }
    if (name === "runcast.history_lost") {
      // The snapshot follows (channels with a reducer); else what history still holds, in the
      // epoch the notice names.
      const d = obj(data);
      if (typeof d.first_seq === "number") this.#position = { epoch: str(d.epoch), seq: d.first_seq - 1 };
      this.dispatchEvent(new CustomEvent("historylost", { detail: d }));
      return;
    }
    if (name === "runcast.lagged") {
      this.#conn.lagged = true; // the server ends this connection next: resume then
      return;
    }
    if (name === "runcast.shutdown") {
      const ms = obj(data).retry_ms;
      if (typeof ms === "number" && ms >= 0) this.#retryAfter = ms;
    }
    const seq = position?.seq ?? null;
    if (position !== null) {
      const at = this.#position;
      if (at !== null && at.epoch === position.epoch && position.seq <= at.seq) {
        this.#info.duplicates += 1;
        return;
      }
      this.#moveTo(position);
    }
    if (!NOTICES.has(name)) this.#conn.fresh = true;
    this.#reducer.apply(name, data, seq);
    this.dispatchEvent(new CustomEvent("event", { detail: { seq, id, name, data } }));
    this.#updated();
    const state = this.#reducer.state;
    if (this.#options.stopOnDone && state.done && state.finished) this.#finish("done");
  }

  #updated() {
    this.dispatchEvent(new CustomEvent("update", { detail: { state: this.#reducer.state } }));
  }

  /**
   * @param {"network" | "refused" | "http"} kind @param {number | null} status @param {string} message
   * @param {number} [code]  a WebSocket's close code
   */
  async #lost(kind, status, message, code) {
    this.#transport = null;
    if (this.#stopped()) return;
    const o = this.#options;
    const state = this.#reducer.state;
    if (o.stopOnDone && state.done && state.finished) return this.#finish("done");
    // 1000: the channel ended and everything was written (README, HTTP API), as SSE's 204 says.
    // Final only for the kinds that end: the others never end by themselves, and resume.
    if (code === 1000 && CHANNEL_KINDS[o.kind].stopOnDone) {
      return this.#finish(state.done && state.finished ? "done" : "no-content");
    }
    if (kind === "refused") {
      // EventSource and WebSocket hide the status: ask once over fetch (aborted at the headers).
      status = await this.#probe();
    }
    if (status === 204) return this.#finish("no-content");
    if (status !== null && [400, 401, 403, 404, 410].includes(status)) {
      return this.#fail(kind === "http" ? message : `HTTP ${status}`, status);
    }
    // A refusal the probe cannot see through (a WebSocket's 403 from a page of another origin,
    // whose fetch CORS blocks) looks like a server that is down: given up on after `maxFailures`.
    if (!this.#conn.opened) this.#failures += 1;
    if (this.#failures >= (o.maxFailures ?? DEFAULT_MAX_FAILURES)) {
      return this.#fail(`${message} (${this.#failures} connection attempts in a row failed)`, status);
    }
    if (this.#everOpened && !this.#cut) this.#info.cuts += 1;
    this.#cut = this.#everOpened;
    this.dispatchEvent(new CustomEvent("error", { detail: { message, status, fatal: false } }));
    // Back off while connections bring nothing new, and after a cut for being slow
    // (`runcast.lagged`, then WebSocket 1013 "try again later") even if they did.
    if (this.#conn.fresh && !this.#conn.lagged && code !== 1013) this.#attempt = 0;
    const delays = o.retryDelays ?? DEFAULT_DELAYS;
    let delay = delays[Math.min(this.#attempt, delays.length - 1)] ?? 1000;
    this.#attempt += 1;
    // `runcast.shutdown` says when to come back (README, Shutdown); WebSocket 1012 ("service
    // restart") follows it, or else waits the longest delay.
    if (code === 1012) this.#retryAfter ??= delays[delays.length - 1] ?? 1000;
    if (this.#retryAfter !== null) delay = Math.max(delay, this.#retryAfter);
    this.#retryAfter = null;
    this.#setState(this.#cut ? "reconnecting" : "connecting", message);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#connect();
    }, delay);
  }

  /** @param {string} message @param {number | null} status */
  #fail(message, status) {
    this.dispatchEvent(new CustomEvent("error", { detail: { message, status, fatal: true } }));
    this.#teardown();
    this.#setState("failed", message);
  }

  /** @returns {Promise<number | null>} */
  async #probe() {
    const abort = new AbortController();
    try {
      const { url, token } = await this.#url();
      const response = await fetch(url.href, {
        headers: { Accept: "text/event-stream", ...(token !== null ? { Authorization: `Bearer ${token}` } : {}) },
        signal: abort.signal,
        cache: "no-store",
      });
      return response.status;
    } catch {
      return null;
    } finally {
      abort.abort();
    }
  }

  #teardown() {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#transport?.close();
    this.#transport = null;
  }

  /** @param {"done" | "no-content" | "closed"} reason */
  #finish(reason) {
    if (this.#stopped()) return;
    this.#teardown();
    this.#setState("ended", reason);
    this.dispatchEvent(new CustomEvent("end", { detail: { reason } }));
  }
}
