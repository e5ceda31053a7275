// @ts-check
/**
 * The viewer page: lists recent runs and threads and the live Responses and Chat streams, follows one of them in several subscriber panes
 * (each its own RuncastStream, over SSE or WebSocket), and, with the embedded simulator, starts
 * demo runs, Responses and Chat streams through runcast's /v1 proxy and answers their tool calls.
 */
import { RuncastStream } from "/client/runcast-client.js";

/** @typedef {import("./runcast-client.js").ChannelKind} ChannelKind */
/** @typedef {import("./runcast-client.js").TransportName} TransportName */
/** @typedef {import("./runcast-client.js").Item} Item */
/** @typedef {import("./runcast-client.js").ToolCall} ToolCall */

/**
 * @typedef {object} Config
 * @property {"open" | "key" | "off"} listing
 * @property {"open" | "token"} subscribe
 * @property {boolean} demo
 * @property {string[]} scenarios
 * @property {boolean} automation runcast answers tool calls itself
 */

/**
 * @typedef {object} Pane
 * @property {number} n
 * @property {TransportName} transport
 * @property {RuncastStream} stream
 * @property {HTMLElement} root
 * @property {Map<string, HTMLElement>} items
 * @property {boolean} queued
 */

const LIST_EVERY_MS = 2000;
const DEMO_PROMPT = "What is the weather in Lisbon, and what time is it there?";
const DEMO_TOOLS = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Current weather in a city",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    },
  },
  {
    type: "function",
    function: {
      name: "get_time",
      description: "Local time in a city",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    },
  },
];

/** @param {string} id @returns {HTMLElement} */
function $(id) {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`#${id} missing`);
  return el;
}

/**
 * @param {string} tag @param {Record<string, string>} [attrs] @param {(Node | string)[]} [children]
 * @returns {HTMLElement}
 */
function h(tag, attrs = {}, children = []) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children);
  return el;
}

const page = {
  /** @type {Config} */
  config: { listing: "off", subscribe: "open", demo: false, scenarios: [], automation: false },
  key: sessionStorage.getItem("runcast.key") ?? "",
  /** @type {Map<string, string>} subscribe tokens by channel ("run:<id>", "thread:<id>") */
  tokens: new Map(),
  /** @type {{kind: ChannelKind, id: string} | null} */
  selected: null,
  /** @type {Pane[]} */
  panes: [],
  paneCount: 0,
  /** @type {Map<string, Set<string>>} tool call ids answered, by run started from this page */
  demoRuns: new Map(),
  /** @type {Set<string>} Responses and Chat streams started from this page */
  demoStreams: new Set(),
  automation: false,
  assistantId: /** @type {string | null} */ (null),
};

/** @returns {Record<string, string>} */
function authHeaders() {
  return page.key ? { Authorization: `Bearer ${page.key}` } : {};
}

/** @param {string} text */
function announce(text) {
  $("announcer").textContent = text;
}

/** @param {Response} response @returns {Promise<string>} */
async function failure(response) {
  try {
    const body = await response.json();
    return body?.error?.message ?? `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

// -- listing ---------------------------------------------------------------------------------------

async function loadConfig() {
  const response = await fetch("/viewer/api/config", { cache: "no-store" });
  page.config = await response.json();
  $("key-form").hidden = page.config.listing !== "key";
  if (page.config.demo) {
    page.automation = page.config.automation;
    const box = $("demo-buttons");
    for (const scenario of page.config.scenarios) {
      const button = h("button", { type: "button", "data-scenario": scenario }, [scenario.replaceAll("_", " ")]);
      button.addEventListener("click", () => void startDemo(scenario, /** @type {HTMLButtonElement} */ (button)));
      box.append(button);
    }
    const streams = $("demo-stream-buttons");
    for (const protocol of /** @type {const} */ (["responses", "chat"])) {
      for (const scenario of ["text", "tool_call"]) {
        if (!page.config.scenarios.includes(scenario)) continue;
        const label = `${protocol === "responses" ? "Responses" : "Chat"}: ${scenario.replaceAll("_", " ")}`;
        const button = h("button", { type: "button", "data-protocol": protocol, "data-scenario": scenario }, [label]);
        button.addEventListener("click", () => void startStreamDemo(protocol, scenario, /** @type {HTMLButtonElement} */ (button)));
        streams.append(button);
      }
    }
    $("demo").hidden = false;
  }
}

async function refreshListing() {
  const status = $("listing-status");
  if (page.config.listing === "off") {
    status.textContent = "Listing is off: subscribers need tokens and runcast has no API keys.";
    return;
  }
  if (page.config.listing === "key" && !page.key) {
    status.textContent = "Enter a runcast API key to list runs.";
    return;
  }
  let response;
  try {
    response = await fetch("/viewer/api/channels", { headers: authHeaders(), cache: "no-store" });
  } catch {
    status.textContent = "runcast is not reachable; retrying.";
    return;
  }
  if (!response.ok) {
    status.textContent = await failure(response);
    return;
  }
  const body = await response.json();
  status.textContent = body.runs.length || body.streams.length ? "" : "No runs yet.";
  /** @param {string} kind @param {string} id @param {{last_seq: number, subscribers: number, ended: boolean, token: string | null}} c */
  const row = (kind, id, c) => {
    if (c.token) page.tokens.set(`${kind}:${id}`, c.token);
    const current = page.selected?.kind === kind && page.selected.id === id;
    const meta = `${c.ended ? "ended" : "live"} · ${c.last_seq} ev · ${c.subscribers} sub`;
    const link = h("a", { href: `#${kind}=${encodeURIComponent(id)}`, "aria-current": String(current) }, [
      h("span", {}, [id]),
      h("span", { class: "meta" }, [c.ended ? "" : h("span", { class: "live-dot", "aria-hidden": "true" }, ["● "]), meta]),
    ]);
    return h("li", {}, [link]);
  };
  $("runs").replaceChildren(...body.runs.map((/** @type {any} */ r) => row("run", r.run_id, r)));
  $("threads").replaceChildren(...body.threads.map((/** @type {any} */ t) => row("thread", t.thread_id, t)));
  $("streams").replaceChildren(...body.streams.map((/** @type {any} */ s) => row(s.kind, s.id, s)));
}

// -- panes -----------------------------------------------------------------------------------------

/** @param {ChannelKind} kind @param {string} id @returns {Promise<string | null>} */
async function tokenFor(kind, id) {
  if (page.config.subscribe === "open") return null;
  const known = page.tokens.get(`${kind}:${id}`);
  if (known) return known;
  if (!page.key || (kind !== "run" && kind !== "thread")) return null;
  const response = await fetch("/tokens", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders() },
    body: JSON.stringify(kind === "run" ? { run_id: id } : { thread_id: id }),
  });
  if (!response.ok) return null;
  const token = (await response.json()).token;
  page.tokens.set(`${kind}:${id}`, token);
  return token;
}

/** @param {TransportName} transport */
function addPane(transport) {
  if (page.selected === null) return;
  const { kind, id } = page.selected;
  const n = ++page.paneCount;
  const label = { sse: "SSE", websocket: "WebSocket", fetch: "SSE (fetch)" }[transport];
  const remove = h("button", { type: "button", class: "secondary", "aria-label": `Remove subscriber ${n}` }, ["×"]);
  const root = h("article", { class: "pane", "data-testid": "pane", "data-transport": transport, "aria-label": `Subscriber ${n} over ${label}` }, [
    h("div", { class: "pane-head" }, [
      h("h3", {}, [`Subscriber ${n} · ${label}`]),
      h("span", { class: "conn", "data-state": "connecting" }, ["connecting"]),
      remove,
    ]),
    h("div", { class: "stats" }, [
      h("span", { class: "seq" }, ["seq –"]), " · ",
      h("span", { class: "cuts", "data-cuts": "0" }, ["0 cuts"]), " · ",
      h("span", { class: "resumes" }, ["0 resumes"]),
    ]),
    h("ol", { class: "timeline", "aria-label": "Status timeline" }),
    h("p", { class: "error-box", hidden: "" }),
    h("div", { class: "items", "aria-label": "Messages and tool calls" }, [h("p", { class: "empty" }, ["Waiting for events…"])]),
  ]);
  // A run started here is replayed from its first event (its whole timeline); others start
  // with the snapshot, as a late joiner does.
  const since = (kind === "run" && page.demoRuns.has(id)) || page.demoStreams.has(id) ? 0 : null;
  const stream = new RuncastStream({ kind, id, transport, since, token: () => tokenFor(kind, id) });
  /** @type {Pane} */
  const pane = { n, transport, stream, root, items: new Map(), queued: false };
  const first = page.panes.length === 0;
  stream.addEventListener("update", () => schedule(pane));
  stream.addEventListener("snapshot", (e) => root.setAttribute("data-snapshot-seq", String(/** @type {CustomEvent} */ (e).detail.seq)));
  stream.addEventListener("connection", (e) => {
    const info = /** @type {CustomEvent} */ (e).detail;
    renderConnection(pane, info);
    if (first && info.state === "reconnecting") announce("Connection lost; resuming.");
    if (first && info.state === "open" && info.resumes > 0) announce("Resumed without a gap.");
  });
  stream.addEventListener("end", (e) => {
    root.setAttribute("data-ended", /** @type {CustomEvent} */ (e).detail.reason);
    schedule(pane);
  });
  stream.addEventListener("error", (e) => {
    const detail = /** @type {CustomEvent} */ (e).detail;
    if (!detail.fatal) return;
    const box = /** @type {HTMLElement} */ (root.querySelector(".error-box"));
    box.hidden = false;
    box.textContent = detail.message;
  });
  if (first) stream.addEventListener("event", (e) => onFirstPaneEvent(/** @type {CustomEvent} */ (e).detail));
  remove.addEventListener("click", () => {
    stream.close();
    root.remove();
    page.panes = page.panes.filter((p) => p !== pane);
  });
  page.panes.push(pane);
  $("panes").append(root);
}

/** @param {Pane} pane @param {import("./runcast-client.js").ConnectionInfo} info */
function renderConnection(pane, info) {
  const conn = /** @type {HTMLElement} */ (pane.root.querySelector(".conn"));
  conn.dataset.state = info.state;
  conn.dataset.cuts = String(info.cuts);
  conn.dataset.resumes = String(info.resumes);
  conn.textContent = { idle: "idle", connecting: "connecting", open: "live", reconnecting: "cut: resuming", ended: "ended", failed: "failed" }[info.state];
  conn.title = info.reason ?? "";
  const q = (/** @type {string} */ s) => /** @type {HTMLElement} */ (pane.root.querySelector(s));
  q(".seq").textContent = `seq ${info.lastSeq ?? "–"} via ${info.via}`;
  q(".cuts").textContent = `${info.cuts} cut${info.cuts === 1 ? "" : "s"}`;
  q(".cuts").dataset.cuts = String(info.cuts);
  q(".resumes").textContent = `${info.resumes} resume${info.resumes === 1 ? "" : "s"}`;
}

/** @param {Pane} pane */
function schedule(pane) {
  if (pane.queued) return;
  pane.queued = true;
  requestAnimationFrame(() => {
    pane.queued = false;
    render(pane);
  });
}

/** @param {number} ms */
function seconds(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/** @param {Pane} pane */
function render(pane) {
  const state = pane.stream.state;
  const root = pane.root;
  renderConnection(pane, pane.stream.connection);
  const start = state.timeline[0]?.at ?? 0;
  /** @type {HTMLElement} */ (root.querySelector(".timeline")).replaceChildren(
    ...state.timeline.map((t) =>
      h("li", { "data-status": t.status }, [t.status, h("span", { class: "t" }, [t.fromSnapshot ? "snapshot" : `+${seconds(t.at - start)}`])]),
    ),
  );
  const box = /** @type {HTMLElement} */ (root.querySelector(".items"));
  if (state.items.length > 0) box.querySelector(".empty")?.remove();
  const seen = new Set();
  for (const item of state.items) {
    seen.add(item.id);
    let el = pane.items.get(item.id);
    if (el === undefined) {
      el = item.kind === "tool_calls" ? h("div", { class: "item tool_calls" }, [h("div", { class: "role" }, ["tool calls"])]) : h("div", { class: "item message" }, [h("div", { class: "role" }, [item.role]), h("p", { class: "text" })]);
      pane.items.set(item.id, el);
      box.append(el);
    }
    el.dataset.role = item.role;
    el.dataset.status = item.status;
    if (item.kind === "tool_calls") renderCalls(el, item.toolCalls);
    else {
      const text = /** @type {HTMLElement} */ (el.querySelector(".text"));
      const value = item.text || item.refusal;
      if (text.textContent !== value) text.textContent = value;
      text.setAttribute("aria-busy", String(item.status === "in_progress"));
      // A chat message carries its tool calls itself (choices[].delta.tool_calls).
      if (item.toolCalls?.length) renderCalls(el, item.toolCalls);
    }
  }
  for (const [id, el] of pane.items) {
    if (!seen.has(id)) {
      el.remove();
      pane.items.delete(id);
    }
  }
}

/** @param {HTMLElement} el @param {ToolCall[]} calls */
function renderCalls(el, calls) {
  for (const call of calls) {
    let row = /** @type {HTMLElement | null} */ (el.querySelector(`[data-call="${CSS.escape(call.id || String(call.index))}"]`));
    if (row === null) {
      row = h("div", { class: "call", "data-call": call.id || String(call.index) }, [
        h("div", { class: "call-head" }, [h("span", { class: "name" }), h("span", { class: "timing" })]),
        h("pre", { class: "args", "aria-label": "arguments" }),
        h("pre", { class: "output", "aria-label": "output" }),
      ]);
      el.append(row);
    }
    const q = (/** @type {string} */ s) => /** @type {HTMLElement} */ (row?.querySelector(s));
    q(".name").textContent = `${call.name || call.type}()`;
    q(".args").textContent = call.arguments;
    q(".output").textContent = call.output ?? "";
    const timing = [];
    if (call.argumentsDoneAt !== null) timing.push(`arguments in ${seconds(call.argumentsDoneAt - call.firstSeenAt)}`);
    if (call.outputAt !== null && call.argumentsDoneAt !== null) timing.push(`output after ${seconds(call.outputAt - call.argumentsDoneAt)}`);
    if (call.durationMs !== null) timing.push(`handler ${seconds(call.durationMs)}`);
    if (call.error) timing.push(`error: ${call.error}`);
    timing.push(call.status);
    q(".timing").textContent = timing.join(" · ");
  }
}

/** @param {ChannelKind} kind @param {string} id */
function select(kind, id) {
  if (page.selected?.kind === kind && page.selected.id === id) return;
  for (const pane of page.panes) pane.stream.close();
  page.panes = [];
  page.paneCount = 0;
  $("panes").replaceChildren();
  page.selected = { kind, id };
  $("stage-title").textContent = `${kind} ${id}`;
  addPane("sse");
  addPane("websocket");
  for (const link of document.querySelectorAll(".channel-list a")) {
    link.setAttribute("aria-current", String(link.getAttribute("href") === `#${kind}=${encodeURIComponent(id)}`));
  }
}

function fromHash() {
  const match = /^#(run|thread|response|chat)=(.+)$/.exec(location.hash);
  if (match === null) return;
  let id;
  try {
    id = decodeURIComponent(match[2]);
  } catch {
    return; // not percent-encoded text (a hand-edited link): nothing to select
  }
  select(/** @type {ChannelKind} */ (match[1]), id);
}

// -- demo runs (embedded simulator only) -----------------------------------------------------------

/** @param {string} path @param {unknown} body */
function v1(path, body) {
  return fetch(`/v1${path}`, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "OpenAI-Beta": "assistants=v2",
      // The embedded simulator takes any bearer; a runcast key, when set, is what runcast wants.
      Authorization: `Bearer ${page.key || "runcast-viewer"}`,
    },
    body: JSON.stringify(body),
  });
}

/** @param {string} scenario @param {HTMLButtonElement} button */
async function startDemo(scenario, button) {
  const status = $("demo-status");
  button.disabled = true;
  try {
    if (page.assistantId === null) {
      const response = await v1("/assistants", { model: "gpt-4o", name: "runcast viewer demo", tools: DEMO_TOOLS });
      if (!response.ok) throw new Error(await failure(response));
      page.assistantId = (await response.json()).id;
    }
    status.textContent = `Starting a ${scenario} run…`;
    const response = await v1("/threads/runs", {
      assistant_id: page.assistantId,
      stream: true,
      metadata: { mock_scenario: scenario },
      thread: { messages: [{ role: "user", content: DEMO_PROMPT }] },
    });
    if (!response.ok) throw new Error(`${response.status}: ${await failure(response)}`);
    const runId = response.headers.get("runcast-run-id");
    const token = response.headers.get("runcast-subscribe-token");
    // runcast keeps relaying for subscribers after its creator leaves: the panes follow the run.
    await response.body?.cancel();
    if (runId === null) throw new Error("no runcast-run-id header");
    if (token) page.tokens.set(`run:${runId}`, token);
    page.demoRuns.set(runId, new Set());
    status.textContent = `Started ${scenario}: ${runId}`;
    location.hash = `run=${encodeURIComponent(runId)}`;
    void refreshListing();
  } catch (err) {
    status.textContent = `${scenario}: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    button.disabled = false;
  }
}

/**
 * Starts a streamed Responses or Chat request on the simulator through runcast; the panes follow
 * its channel from the first event while this page drops the creator's copy.
 * @param {"responses" | "chat"} protocol @param {string} scenario @param {HTMLButtonElement} button
 */
async function startStreamDemo(protocol, scenario, button) {
  const status = $("demo-status");
  button.disabled = true;
  try {
    status.textContent = `Starting a ${protocol} ${scenario} stream…`;
    const metadata = { mock_scenario: scenario };
    const response =
      protocol === "responses"
        ? await v1("/responses", {
            model: "gpt-4o",
            input: DEMO_PROMPT,
            stream: true,
            metadata,
            tools: DEMO_TOOLS.map((t) => ({ type: "function", ...t.function })),
          })
        : await v1("/chat/completions", {
            model: "gpt-4o",
            messages: [{ role: "user", content: DEMO_PROMPT }],
            stream: true,
            metadata,
            tools: DEMO_TOOLS,
          });
    if (!response.ok) throw new Error(`${response.status}: ${await failure(response)}`);
    const kind = protocol === "responses" ? "response" : "chat";
    const id = response.headers.get(protocol === "responses" ? "runcast-response-id" : "runcast-completion-id");
    const token = response.headers.get("runcast-subscribe-token");
    await response.body?.cancel();
    if (id === null) throw new Error(`no runcast-${kind === "chat" ? "completion" : "response"}-id header`);
    if (token) page.tokens.set(`${kind}:${id}`, token);
    page.demoStreams.add(id);
    status.textContent = `Started ${protocol} ${scenario}: ${id}`;
    location.hash = `${kind}=${encodeURIComponent(id)}`;
    void refreshListing();
  } catch (err) {
    status.textContent = `${protocol} ${scenario}: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    button.disabled = false;
  }
}

/** Answers the tool calls of runs this page started, as a client application would. */
async function onFirstPaneEvent(/** @type {{name: string, data: any}} */ { name, data }) {
  if (name !== "thread.run.requires_action" || page.automation) return;
  const answered = page.demoRuns.get(data.id);
  const calls = data.required_action?.submit_tool_outputs?.tool_calls ?? [];
  if (answered === undefined || calls.every((/** @type {any} */ c) => answered.has(c.id))) return;
  for (const c of calls) answered.add(c.id);
  const outputs = calls.map((/** @type {any} */ c) => ({
    tool_call_id: c.id,
    output: JSON.stringify(demoOutput(c.function.name, c.function.arguments)),
  }));
  const response = await v1(`/threads/${data.thread_id}/runs/${data.id}/submit_tool_outputs`, { tool_outputs: outputs, stream: true });
  if (!response.ok) {
    $("demo-status").textContent = `submit_tool_outputs: ${await failure(response)}`;
    return;
  }
  await response.body?.cancel();
}

/** @param {string} name @param {string} args */
function demoOutput(name, args) {
  let city = "Lisbon";
  try {
    city = JSON.parse(args).city ?? city;
  } catch {
    // Arguments that are not JSON still get an answer: the model can recover.
  }
  if (name === "get_time") return { city, time: new Date().toISOString().slice(11, 16) };
  return { city, temp_c: 19, sky: "clear" };
}

// -- start -----------------------------------------------------------------------------------------

$("pane-form").addEventListener("submit", (e) => {
  e.preventDefault();
  addPane(/** @type {TransportName} */ (/** @type {HTMLSelectElement} */ ($("pane-transport")).value));
});
$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  page.key = /** @type {HTMLInputElement} */ ($("key")).value.trim();
  sessionStorage.setItem("runcast.key", page.key);
  page.tokens.clear();
  void refreshListing();
});
window.addEventListener("hashchange", fromHash);

await loadConfig();
await refreshListing();
fromHash();
setInterval(() => {
  if (document.visibilityState === "visible") void refreshListing();
}, LIST_EVERY_MS);
