// Reducers of runcast-client.js on literal event sequences: Assistants (spec
// ../shared/spec/assistants-stream.md), Responses and Chat Completions
// (../shared/reference/responses-and-chat.md §1.1, §4.1).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  assistantsReducer,
  autoReducer,
  chatReducer,
  responsesReducer,
} from "../../../../gateway/web/static/runcast-client.js";

const clock = () => {
  let t = 1000;
  return () => (t += 10);
};

test("assistants: text deltas, tool call arguments, output after the continuation", () => {
  const r = assistantsReducer({ now: clock() });
  const run = (status, extra = {}) => ({ id: "run_1", object: "thread.run", thread_id: "th_1", status, ...extra });
  r.apply("thread.run.created", run("queued"), 1);
  r.apply("thread.run.in_progress", run("in_progress"), 2);
  r.apply("thread.run.step.created", {
    id: "step_1", run_id: "run_1", type: "tool_calls", status: "in_progress",
    step_details: { type: "tool_calls", tool_calls: [] },
  }, 3);
  r.apply("thread.run.step.delta", {
    id: "step_1", delta: { step_details: { type: "tool_calls", tool_calls: [
      { index: 0, id: "call_1", type: "function", function: { name: "get_weather", arguments: "", output: null } },
    ] } },
  }, 4);
  for (const [seq, piece] of [[5, '{"ci'], [6, 'ty":'], [7, '"Oslo"}']]) {
    r.apply("thread.run.step.delta", {
      id: "step_1", delta: { step_details: { type: "tool_calls", tool_calls: [
        { index: 0, type: "function", function: { arguments: piece } },
      ] } },
    }, seq);
  }
  r.apply("thread.run.requires_action", run("requires_action", {
    required_action: { type: "submit_tool_outputs", submit_tool_outputs: { tool_calls: [{ id: "call_1" }] } },
  }), 8);
  r.apply("done", "[DONE]", 9);
  assert.equal(r.state.finished, false, "requires_action is not the end of the run");
  const call = r.state.items[0].toolCalls[0];
  assert.deepEqual([call.name, call.arguments, call.status, call.output], ["get_weather", '{"city":"Oslo"}', "waiting", null]);

  r.apply("thread.run.step.completed", {
    id: "step_1", run_id: "run_1", type: "tool_calls", status: "completed",
    step_details: { type: "tool_calls", tool_calls: [
      { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Oslo"}', output: "4 C" } },
    ] },
  }, 10);
  r.apply("runcast.tool_call.completed", { tool_call_id: "call_1", name: "get_weather", duration_ms: 12 }, null);
  r.apply("thread.run.queued", run("queued"), 11);
  r.apply("thread.run.in_progress", run("in_progress"), 12);
  r.apply("thread.message.created", {
    id: "msg_1", object: "thread.message", run_id: "run_1", role: "assistant", status: "in_progress", content: [],
  }, 13);
  r.apply("thread.message.in_progress", { id: "msg_1", role: "assistant", status: "in_progress", content: [] }, 14);
  for (const [seq, value] of [[15, "It is "], [16, "4 C"], [17, " in Oslo."]]) {
    r.apply("thread.message.delta", { id: "msg_1", delta: { content: [{ index: 0, type: "text", text: { value } }] } }, seq);
  }
  assert.equal(r.state.items[1].text, "It is 4 C in Oslo.");
  r.apply("thread.message.completed", {
    id: "msg_1", role: "assistant", status: "completed",
    content: [{ type: "text", text: { value: "It is 4 C in Oslo.", annotations: [] } }],
  }, 18);
  r.apply("thread.run.completed", run("completed", { usage: { total_tokens: 9 } }), 19);
  r.apply("done", "[DONE]", 20);

  const s = r.state;
  assert.equal(s.finished, true);
  assert.deepEqual(s.items.map((i) => [i.kind, i.status]), [["tool_calls", "completed"], ["message", "completed"]]);
  assert.equal(s.items[1].text, "It is 4 C in Oslo.");
  assert.deepEqual([call.output, call.status, call.durationMs], ["4 C", "completed", 12]);
  assert.ok(call.outputAt > call.argumentsDoneAt && call.argumentsDoneAt > call.firstSeenAt);
  assert.deepEqual(s.timeline.map((t) => t.status), ["queued", "in_progress", "requires_action", "queued", "in_progress", "completed"]);
  assert.deepEqual(s.usage, { total_tokens: 9 });
});

test("assistants: a snapshot seeds the state and deltas continue it", () => {
  const r = assistantsReducer({ now: clock() });
  r.load({
    run_id: "run_1", thread_id: "th_1", status: "in_progress", done: false,
    messages: [{ id: "msg_1", role: "assistant", status: "in_progress", content: [{ type: "text", text: { value: "Hel" } }] }],
    steps: [
      { id: "step_m", type: "message_creation", step_details: { type: "message_creation", message_creation: { message_id: "msg_1" } } },
    ],
  }, 7);
  r.apply("thread.message.delta", { id: "msg_1", delta: { content: [{ index: 0, type: "text", text: { value: "lo" } }] } }, 8);
  assert.equal(r.state.items.length, 1);
  assert.equal(r.state.items[0].text, "Hello");
  assert.deepEqual(r.state.timeline.map((t) => [t.status, t.fromSnapshot]), [["in_progress", true]]);
});

// responses-and-chat.md §1.1: the recorded gpt-5 stream (function call) and the spec's text example.
test("responses: output text and function call arguments from the documented events", () => {
  const r = responsesReducer({ now: clock() });
  const events = [
    { type: "response.created", sequence_number: 0, response: { id: "resp_68d9303e0ef4819e9abaed38fac5de4f03aa6e5a972b3b23", object: "response", status: "in_progress", output: [] } },
    { type: "response.output_item.added", sequence_number: 1, output_index: 0, item: { id: "msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654", type: "message", status: "in_progress", role: "assistant", content: [] } },
    { type: "response.content_part.added", sequence_number: 2, item_id: "msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654", output_index: 0, content_index: 0, part: { type: "output_text", text: "", annotations: [] } },
    { type: "response.output_text.delta", sequence_number: 3, item_id: "msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654", output_index: 0, content_index: 0, delta: "Hi", obfuscation: "4FZhoGBnjNsYATZ" },
    { type: "response.output_text.delta", sequence_number: 4, item_id: "msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654", output_index: 0, content_index: 0, delta: " there" },
    { type: "keepalive", sequence_number: 5 },
    { type: "response.output_item.added", sequence_number: 6, output_index: 1, item: { id: "fc_68d9303fe7fc819ea999bda43617404203aa6e5a972b3b23", type: "function_call", status: "in_progress", arguments: "", call_id: "call_5dp5Uj0Loqn1YcyIpqSq6sLX", name: "get_weather" } },
    { type: "response.function_call_arguments.delta", sequence_number: 7, item_id: "fc_68d9303fe7fc819ea999bda43617404203aa6e5a972b3b23", output_index: 1, delta: "{", obfuscation: "4FZhoGBnjNsYATZ" },
    { type: "response.function_call_arguments.delta", sequence_number: 8, item_id: "fc_68d9303fe7fc819ea999bda43617404203aa6e5a972b3b23", output_index: 1, delta: ' "location": "New York City, USA" }' },
    // `name` absent on the wire (§1.3): it comes from output_item.added.
    { type: "response.function_call_arguments.done", sequence_number: 17, item_id: "fc_68d9303fe7fc819ea999bda43617404203aa6e5a972b3b23", output_index: 1, arguments: '{ "location": "New York City, USA" }' },
    { type: "response.output_item.done", sequence_number: 18, output_index: 1, item: { id: "fc_68d9303fe7fc819ea999bda43617404203aa6e5a972b3b23", type: "function_call", status: "completed", arguments: '{ "location": "New York City, USA" }', call_id: "call_5dp5Uj0Loqn1YcyIpqSq6sLX", name: "get_weather" } },
  ];
  events.forEach((e, i) => r.apply(e.type, e, i + 1));
  const [message, fc] = r.state.items;
  assert.equal(message.text, "Hi there");
  assert.equal(fc.kind, "tool_calls");
  assert.deepEqual(
    [fc.toolCalls[0].id, fc.toolCalls[0].name, fc.toolCalls[0].arguments, fc.toolCalls[0].status],
    ["call_5dp5Uj0Loqn1YcyIpqSq6sLX", "get_weather", '{ "location": "New York City, USA" }', "completed"],
  );
  assert.equal(r.state.finished, false);
  r.apply("response.completed", { type: "response.completed", sequence_number: 19, response: { id: "resp_68d9303e0ef4819e9abaed38fac5de4f03aa6e5a972b3b23", status: "completed", usage: { input_tokens: 37, output_tokens: 11, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 48 } } }, 12);
  assert.equal(r.state.status, "completed");
  assert.equal(r.state.finished, true);
  assert.equal(r.state.usage.total_tokens, 48);
  assert.deepEqual(r.state.timeline.map((t) => t.status), ["in_progress", "completed"]);
});

test("responses: nested and flat error events (§1.5)", () => {
  const r = responsesReducer({ now: clock() });
  r.apply("error", { type: "error", error: { type: "insufficient_quota", code: "credit_balance_exhausted", message: "…", param: null }, sequence_number: 2 }, 1);
  assert.equal(r.state.error.code, "credit_balance_exhausted");
  r.apply("error", { type: "error", code: "server_error", message: "boom", param: null, sequence_number: 3 }, 2);
  assert.deepEqual(r.state.error, { code: "server_error", message: "boom", param: null });
});

// responses-and-chat.md §4.1: the spec's chunks, then tool-call deltas by index.
test("chat: content deltas, tool calls by index, finish_reason, usage chunk and [DONE]", () => {
  const r = chatReducer({ now: clock() });
  const chunks = [
    { id: "chatcmpl-123", object: "chat.completion.chunk", created: 1694268190, model: "gpt-4o-mini", system_fingerprint: "fp_44709d6fcb", choices: [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }], obfuscation: "r4N7vQ2m" },
    { id: "chatcmpl-123", object: "chat.completion.chunk", created: 1694268190, model: "gpt-4o-mini", choices: [{ index: 0, delta: { content: "Hello" }, logprobs: null, finish_reason: null }], obfuscation: "p9K3xT6w" },
    { id: "chatcmpl-123", object: "chat.completion.chunk", created: 1694268190, model: "gpt-4o-mini", choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: "call_a", type: "function", function: { name: "get_weather", arguments: "" } }] }, finish_reason: null }] },
    { id: "chatcmpl-123", object: "chat.completion.chunk", created: 1694268190, model: "gpt-4o-mini", choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }, finish_reason: null }] },
    { id: "chatcmpl-123", object: "", choices: [] },
    { id: "chatcmpl-123", object: "chat.completion.chunk", created: 1694268190, model: "gpt-4o-mini", choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }, finish_reason: null }] },
    { id: "chatcmpl-123", object: "chat.completion.chunk", created: 1694268190, model: "gpt-4o-mini", choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: "tool_calls" }], obfuscation: "" },
    { id: "chatcmpl-123", object: "chat.completion.chunk", created: 1694268190, model: "gpt-4o-mini", choices: [], usage: { prompt_tokens: 9, completion_tokens: 12, total_tokens: 21 } },
  ];
  chunks.forEach((c, i) => r.apply("message", c, i + 1));
  assert.equal(r.state.finished, false);
  r.apply("message", "[DONE]", 9);
  const [item] = r.state.items;
  assert.equal(r.state.items.length, 1);
  assert.deepEqual([item.role, item.text, item.status], ["assistant", "Hello", "tool_calls"]);
  assert.deepEqual([item.toolCalls.length, item.toolCalls[0].name, item.toolCalls[0].arguments], [1, "get_weather", '{"city":"Paris"}']);
  assert.equal(r.state.usage.total_tokens, 21);
  assert.equal(r.state.finished, true);
});

test("chat: tool call deltas without index continue by id, then the last open call (§7.5)", () => {
  const r = chatReducer({ now: clock() });
  const delta = (tool_calls) => ({ id: "c1", object: "chat.completion.chunk", choices: [{ index: 0, delta: { tool_calls } }] });
  r.apply("message", delta([{ id: "call_x", function: { name: "f", arguments: "{" } }]), 1);
  r.apply("message", delta([{ id: "call_x", function: { arguments: '"a":' } }]), 2);
  r.apply("message", delta([{ function: { arguments: "1}" } }]), 3);
  const calls = r.state.items[0].toolCalls;
  assert.deepEqual(calls.map((c) => [c.id, c.name, c.arguments]), [["call_x", "f", '{"a":1}']]);
});

test("auto: a named channel picks its reducer from the first telling event", () => {
  const r = autoReducer({ now: clock() });
  r.apply("message", { id: "c1", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: "yo" } }] }, 1);
  assert.equal(r.state.protocol, "chat");
  assert.equal(r.state.items[0].text, "yo");
});

// Snapshots as the server sends them (README: `/streams/chat/{id}/snapshot`, the Responses one).
const CHAT_SNAPSHOT = {
  completion: {
    id: "chatcmpl-9", object: "chat.completion", created: 1694268190, model: "gpt-4o-mini",
    choices: [{ index: 0, message: { role: "assistant", content: "Sunny.", tool_calls: [
      { index: 0, id: "call_a", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
    ] }, finish_reason: "stop" }],
    usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 },
  },
  error: null,
  done: true,
};

test("chat: a late joiner's snapshot seeds text and tool calls, and a finished one says so", () => {
  // It read `id` and `choices` at the top: a late joiner saw nothing, and a finished stream
  // was never finished, so a WebSocket pane reconnected to it every few seconds.
  const r = chatReducer({ now: clock() });
  r.load(CHAT_SNAPSHOT, 7);
  const [item] = r.state.items;
  assert.equal(r.state.runId, "chatcmpl-9");
  assert.deepEqual([item.role, item.text, item.status], ["assistant", "Sunny.", "stop"]);
  assert.deepEqual(item.toolCalls.map((c) => [c.id, c.name, c.arguments]), [["call_a", "get_weather", '{"city":"Paris"}']]);
  assert.equal(r.state.usage.total_tokens, 12);
  assert.equal(r.state.done && r.state.finished, true);
  r.load({ ...CHAT_SNAPSHOT, done: false }, 3);
  assert.equal(r.state.finished, false);
});

test("responses: a finished response's snapshot is done and finished", () => {
  const r = responsesReducer({ now: clock() });
  const response = { id: "resp_1", object: "response", status: "completed", output: [
    { id: "msg_1", type: "message", role: "assistant", status: "completed", content: [{ type: "output_text", text: "Hi." }] },
  ] };
  r.load({ response, sequence_number: 9, error: null, done: true }, 10);
  assert.equal(r.state.items[0].text, "Hi.");
  assert.equal(r.state.done && r.state.finished, true);
  r.load({ response: { ...response, status: "in_progress" }, sequence_number: 4, error: null, done: false }, 5);
  assert.equal(r.state.done || r.state.finished, false);
});

test("auto: a named channel's chat snapshot picks the chat reducer", () => {
  const r = autoReducer({ now: clock() });
  r.load(CHAT_SNAPSHOT, 7);
  assert.equal(r.state.protocol, "chat");
  assert.equal(r.state.items[0].text, "Sunny.");
});

test("auto: an empty snapshot (a named channel subscribed first) leaves the kind open", () => {
  // runcast answers ?snapshot=1 on a channel with no stream yet with a null snapshot: taking it
  // for an Assistants one fixed the reducer, and every chat chunk after it was dropped.
  const r = autoReducer({ now: clock() });
  r.load(null, 0);
  r.apply("message", { id: "c1", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: "yo" } }] }, 1);
  assert.equal(r.state.protocol, "chat");
  assert.equal(r.state.items[0].text, "yo");
});

// README, HTTP API: `runcast.upstream_lost` ends a Responses or Chat stream cut upstream; the
// server's snapshot is then done and shows its error unless the stream had its own.
const LOST = { error: { message: "the upstream stream was cut", type: "runcast_upstream_lost", param: null, code: "upstream_lost" }, reason: "cut", kind: "response", id: "resp_1", cursor: 2 };

test("responses and chat: runcast.upstream_lost ends the stream with its error", () => {
  const responses = responsesReducer({ now: clock() });
  responses.apply("response.created", { type: "response.created", response: { id: "resp_1", status: "in_progress", output: [] } }, 1);
  responses.apply("runcast.upstream_lost", LOST, 2);
  const chat = chatReducer({ now: clock() });
  chat.apply("message", { id: "c1", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: "Hi" } }] }, 1);
  chat.apply("runcast.upstream_lost", { ...LOST, kind: "chat", id: "c1" }, 2);
  for (const r of [responses, chat]) {
    assert.deepEqual([r.state.error, r.state.done, r.state.finished], [LOST.error, true, true]);
    assert.equal(r.state.timeline.at(-1).status, "runcast.upstream_lost");
  }

  // The stream's own error stays.
  const own = chatReducer({ now: clock() });
  own.apply("message", { error: { message: "overloaded", code: "overloaded" } }, 1);
  own.apply("runcast.upstream_lost", LOST, 2);
  assert.equal(own.state.error.code, "overloaded");
});

test("responses: a runcast.upstream_lost naming a status (cancelled) sets it", () => {
  const r = responsesReducer({ now: clock() });
  r.apply("response.created", { type: "response.created", response: { id: "resp_1", status: "in_progress", output: [] } }, 1);
  r.apply("runcast.upstream_lost", { ...LOST, status: "cancelled" }, 2);
  assert.deepEqual([r.state.status, r.state.done, r.state.finished], ["cancelled", true, true]);
});

test("a thread's, conversation's or named channel's next run does not keep the last one's error", () => {
  const thread = assistantsReducer({ now: clock() });
  thread.apply("thread.run.failed", { id: "run_1", status: "failed", last_error: { code: "server_error" } }, 1);
  thread.apply("error", { code: "server_error", message: "boom" }, 2);
  thread.apply("done", "[DONE]", 3);
  assert.equal(thread.state.error.code, "server_error");
  thread.apply("thread.run.created", { id: "run_2", status: "queued" }, 4);
  assert.equal(thread.state.error, null);

  const conversation = responsesReducer({ now: clock() });
  conversation.apply("response.failed", { type: "response.failed", response: { id: "resp_1", status: "failed", error: { code: "server_error" } } }, 1);
  assert.equal(conversation.state.error.code, "server_error");
  conversation.apply("response.created", { type: "response.created", response: { id: "resp_2", status: "in_progress" } }, 2);
  assert.equal(conversation.state.error, null);

  const named = chatReducer({ now: clock() });
  named.apply("message", { id: "c1", object: "chat.completion.chunk", choices: [] }, 1);
  named.apply("runcast.upstream_lost", LOST, 2);
  named.apply("message", { id: "c2", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: "Hi" } }] }, 3);
  assert.deepEqual([named.state.error, named.state.done, named.state.finished], [null, false, false]);
});
