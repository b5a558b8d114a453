// The official OpenAI JavaScript SDK against the local Bedrock's OpenAI-compatible surfaces.
//
// Configured only as a user would: OPENAI_BASE_URL (the server's /openai/v1) and OPENAI_API_KEY (its Bedrock API
// key). argv[2] is the model (an imported model's name or ARN). Prints one line per check; any failure throws.
import assert from "node:assert/strict";
import OpenAI from "openai";

const model = process.argv[2];
const client = new OpenAI({ maxRetries: 8 });

let r = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Say hello." }], max_tokens: 8, temperature: 0,
});
assert.equal(r.object, "chat.completion");
assert.equal(r.choices[0].message.role, "assistant");
assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
console.log("openai-js chat ok");

const stream = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Say hello." }], max_tokens: 8, temperature: 0,
  stream: true, stream_options: { include_usage: true },
});
const chunks = [];
for await (const c of stream) chunks.push(c);
assert.ok(chunks.some((c) => c.choices.length && c.choices[0].finish_reason), JSON.stringify(chunks));
assert.ok(chunks.at(-1).usage && chunks.at(-1).usage.completion_tokens >= 1);
console.log("openai-js stream ok");

const tools = [{
  type: "function",
  function: {
    name: "get_weather", description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string", enum: ["Paris", "Tokyo"] } }, required: ["city"] },
  },
}];
r = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "What is the weather in Paris?" }], tools, tool_choice: "required",
  max_tokens: 64, temperature: 0,
});
const call = r.choices[0].message.tool_calls[0];
const args = JSON.parse(call.function.arguments);
assert.equal(call.function.name, "get_weather");
assert.deepEqual(Object.keys(args), ["city"]);
assert.equal(r.choices[0].finish_reason, "tool_calls");
console.log("openai-js forced tool call ok", JSON.stringify(args));

r = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Is Paris in France? Answer in JSON." }], max_tokens: 32, temperature: 0,
  response_format: {
    type: "json_schema",
    json_schema: { name: "yes_no", schema: { type: "object", properties: { answer: { type: "string", enum: ["yes", "no"] } }, required: ["answer"], additionalProperties: false } },
  },
});
assert.ok(["yes", "no"].includes(JSON.parse(r.choices[0].message.content).answer));
console.log("openai-js structured output ok");

const resp = await client.responses.create({ model, input: "Say hello.", max_output_tokens: 8, temperature: 0 });
assert.equal(resp.object, "response");
assert.equal(typeof resp.output_text, "string");
console.log("openai-js responses ok");

try {
  await client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "Hi" }] });
  assert.fail("no error for an unknown model");
} catch (e) {
  assert.ok(e instanceof OpenAI.NotFoundError, String(e));
  assert.equal(e.status, 404);
  console.log("openai-js not found ok");
}
console.log("openai-js flow ok");
