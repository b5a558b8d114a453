// The AWS SDK for JavaScript v3 against the local Bedrock: S3 (a multipart upload through lib-storage), an import
// job to Completed, Converse, ConverseStream (text and a forced tool call), InvokeModel,
// InvokeModelWithResponseStream and typed errors, over the handler named on the command line.
//
// Usage: node flow.mjs MODEL_DIR h2|h1 NAME
//   h2: each client's default handler (bedrock-runtime's is NodeHttp2Handler, HTTP/2 with prior knowledge on
//       http://; S3 and bedrock use NodeHttpHandler by default);
//   h1: NodeHttpHandler (HTTP/1.1) for bedrock-runtime too.
// Endpoint, region and credentials come from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, given to the clients as `endpoint` and `credentials` and nothing else.
// Prints one `ok <step>` line per step; the Rust driver (crates/cmi/tests/clients.rs) checks them.

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";

import { S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import {
  BedrockClient, CreateModelImportJobCommand, GetModelImportJobCommand, GetImportedModelCommand,
  ListImportedModelsCommand, ConflictException, ResourceNotFoundException as CpNotFound,
} from "@aws-sdk/client-bedrock";
import {
  BedrockRuntimeClient, ConverseCommand, ConverseStreamCommand, InvokeModelCommand,
  InvokeModelWithResponseStreamCommand, ValidationException, ResourceNotFoundException,
} from "@aws-sdk/client-bedrock-runtime";
import { NodeHttpHandler, NodeHttp2Handler } from "@smithy/node-http-handler";

const [modelDir, mode, name] = process.argv.slice(2);
if (!modelDir || !["h1", "h2"].includes(mode) || !name) {
  console.error("usage: node flow.mjs MODEL_DIR h2|h1 NAME");
  process.exit(2);
}
const base = {
  endpoint: process.env.AWS_ENDPOINT_URL,
  region: process.env.AWS_REGION ?? "us-east-1",
  credentials: { accessKeyId: process.env.AWS_ACCESS_KEY_ID, secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY },
};
const s3 = new S3Client(base);
const cp = new BedrockClient(base);
const rt = new BedrockRuntimeClient(mode === "h1" ? { ...base, requestHandler: new NodeHttpHandler() } : base);
// The default really is HTTP/2: a regression here would quietly turn the h2 run into a second h1 run.
const handler = rt.config.requestHandler;
if (mode === "h2" && !(handler instanceof NodeHttp2Handler)) throw new Error(`default handler is ${handler?.constructor?.name}`);
if (mode === "h1" && !(handler instanceof NodeHttpHandler)) throw new Error(`h1 handler is ${handler?.constructor?.name}`);

function assert(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}
const ok = (step, detail = "") => console.log(`ok ${step}${detail ? " " + detail : ""}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- S3: model files one by one, then 12 MiB through lib-storage in 5 MiB parts.
const bucket = `js-${name}`;
await s3.send(new CreateBucketCommand({ Bucket: bucket }));
for (const f of readdirSync(modelDir).sort()) {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `model/${f}`, Body: readFileSync(join(modelDir, f)) }));
}
const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "model/" }));
assert(listed.Contents.some((o) => o.Key === "model/config.json"), "config.json listed");
const big = randomBytes(12 * 1024 * 1024);
const up = new Upload({ client: s3, params: { Bucket: bucket, Key: "big.bin", Body: big }, partSize: 5 * 1024 * 1024, queueSize: 2 });
const done = await up.done();
assert(/-3"?$/.test(done.ETag), `multipart ETag ${done.ETag}`);
const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "big.bin" }));
assert(head.ContentLength === big.length, `length ${head.ContentLength}`);
const got = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "big.bin" }))).Body.transformToByteArray());
assert(got.equals(big), "multipart object round-trips");
ok("s3", `files=${listed.Contents.length} multipart=${done.ETag}`);

// ---- Control plane: an import job to Completed.
const jobArn = (await cp.send(new CreateModelImportJobCommand({
  jobName: `js-${name}-job`, importedModelName: `js-${name}`, roleArn: "arn:aws:iam::123456789012:role/Import",
  modelDataSource: { s3DataSource: { s3Uri: `s3://${bucket}/model/` } },
}))).jobArn;
let job;
for (let i = 0; i < 600; i++) {
  job = await cp.send(new GetModelImportJobCommand({ jobIdentifier: jobArn }));
  if (job.status !== "InProgress") break;
  await sleep(100);
}
assert(job.status === "Completed", `job ${job.status} ${job.failureMessage ?? ""}`);
assert(job.creationTime instanceof Date, "creationTime is a Date");
const modelArn = job.importedModelArn;
const m = await cp.send(new GetImportedModelCommand({ modelIdentifier: modelArn }));
assert(m.modelArn === modelArn && m.instructSupported === true, "imported model");
const all = await cp.send(new ListImportedModelsCommand({}));
assert(all.modelSummaries.some((s) => s.modelArn === modelArn), "listed");
ok("import", `${m.modelName} ${m.modelArchitecture}`);
try {
  await cp.send(new CreateModelImportJobCommand({
    jobName: `js-${name}-job`, importedModelName: `js-${name}-again`, roleArn: "arn:aws:iam::123456789012:role/Import",
    modelDataSource: { s3DataSource: { s3Uri: `s3://${bucket}/model/` } },
  }));
  throw new Error("duplicate job name accepted");
} catch (e) {
  assert(e instanceof ConflictException, `duplicate job: ${e.name}`);
}
try {
  await cp.send(new GetImportedModelCommand({ modelIdentifier: "no-such-model" }));
  throw new Error("unknown model found");
} catch (e) {
  assert(e instanceof CpNotFound, `unknown model: ${e.name}`);
}
ok("control-plane errors");

// ---- Runtime.
const hello = [{ role: "user", content: [{ text: "Hello" }] }];
const c = await rt.send(new ConverseCommand({ modelId: modelArn, messages: hello, inferenceConfig: { maxTokens: 12, temperature: 0 } }));
assert(["end_turn", "max_tokens"].includes(c.stopReason), `stopReason ${c.stopReason}`);
assert(c.output.message.role === "assistant" && typeof c.output.message.content[0].text === "string", "converse message");
assert(c.usage.inputTokens > 0 && c.usage.outputTokens > 0 && c.usage.totalTokens === c.usage.inputTokens + c.usage.outputTokens, "usage");
assert(typeof c.metrics.latencyMs === "number", "metrics");
ok("converse", c.stopReason);

const tools = {
  tools: [{ toolSpec: { name: "get_weather", description: "Weather for a city", inputSchema: { json: {
    type: "object", properties: { city: { type: "string", enum: ["Paris", "Oslo"] } }, required: ["city"], additionalProperties: false,
  } } } }],
  toolChoice: { any: {} },
};
const ask = [{ role: "user", content: [{ text: "Weather in Paris?" }] }];
const ct = await rt.send(new ConverseCommand({ modelId: modelArn, messages: ask, toolConfig: tools, inferenceConfig: { maxTokens: 64, temperature: 0 } }));
const use = ct.output.message.content.find((b) => b.toolUse)?.toolUse;
assert(ct.stopReason === "tool_use" && use?.name === "get_weather" && ["Paris", "Oslo"].includes(use.input.city), `converse tool ${JSON.stringify(ct.output)}`);
ok("converse tool", JSON.stringify(use.input));

// A second turn with the tool's result, as every agent sends it.
const turn2 = [...ask, ct.output.message, { role: "user", content: [{ toolResult: { toolUseId: use.toolUseId, content: [{ json: { tempC: 21 } }], status: "success" } }] }];
const c2 = await rt.send(new ConverseCommand({ modelId: modelArn, messages: turn2, toolConfig: { tools: tools.tools }, inferenceConfig: { maxTokens: 8, temperature: 0 } }));
assert(c2.output.message.role === "assistant", "tool result turn");
ok("converse tool result", c2.stopReason);

async function stream(req) {
  const out = await rt.send(new ConverseStreamCommand(req));
  const events = [];
  let text = "", toolInput = "", toolStart, stop, usage;
  for await (const ev of out.stream) {
    const k = Object.keys(ev).find((k) => ev[k] !== undefined);
    events.push(k);
    if (ev.contentBlockStart?.start?.toolUse) toolStart = ev.contentBlockStart.start.toolUse;
    if (ev.contentBlockDelta?.delta?.text !== undefined) text += ev.contentBlockDelta.delta.text;
    if (ev.contentBlockDelta?.delta?.toolUse) toolInput += ev.contentBlockDelta.delta.toolUse.input;
    if (ev.messageStop) stop = ev.messageStop.stopReason;
    if (ev.metadata) usage = ev.metadata.usage;
  }
  return { events, text, toolInput, toolStart, stop, usage };
}
const s = await stream({ modelId: modelArn, messages: hello, inferenceConfig: { maxTokens: 12, temperature: 0 } });
assert(s.events[0] === "messageStart" && s.events.at(-1) === "metadata" && s.events.includes("messageStop"), s.events.join(","));
assert(s.usage?.outputTokens > 0, "stream usage");
ok("converse-stream", `${s.events.length} events ${s.stop}`);

const st = await stream({ modelId: modelArn, messages: ask, toolConfig: tools, inferenceConfig: { maxTokens: 64, temperature: 0 } });
assert(st.stop === "tool_use" && st.toolStart?.name === "get_weather" && st.toolStart.toolUseId, `stream tool ${JSON.stringify(st)}`);
assert(["Paris", "Oslo"].includes(JSON.parse(st.toolInput).city), `tool input ${st.toolInput}`);
ok("converse-stream tool", st.toolInput);

// InvokeModel in the Llama body format (what imported Llama-type models take) and the OpenAI chat format.
const enc = (v) => new TextEncoder().encode(JSON.stringify(v));
const dec = (b) => JSON.parse(new TextDecoder().decode(b));
const inv = await rt.send(new InvokeModelCommand({ modelId: modelArn, contentType: "application/json", accept: "application/json",
  body: enc({ prompt: "Hello", max_gen_len: 8, temperature: 0 }) }));
const iv = dec(inv.body);
assert(typeof iv.generation === "string" && ["stop", "length"].includes(iv.stop_reason), `invoke ${JSON.stringify(iv)}`);
assert(inv.contentType === "application/json", `contentType ${inv.contentType}`);
ok("invoke", iv.stop_reason);
const chat = dec((await rt.send(new InvokeModelCommand({ modelId: modelArn, contentType: "application/json",
  body: enc({ messages: [{ role: "user", content: "Hello" }], max_tokens: 8, temperature: 0 }) }))).body);
assert(chat.choices?.[0]?.message?.role === "assistant", `chat ${JSON.stringify(chat)}`);
ok("invoke openai-chat", chat.choices[0].finish_reason);

const ist = await rt.send(new InvokeModelWithResponseStreamCommand({ modelId: modelArn, contentType: "application/json",
  body: enc({ prompt: "Hello", max_gen_len: 8, temperature: 0 }) }));
const chunks = [];
for await (const ev of ist.body) {
  assert(ev.chunk, `stream event ${Object.keys(ev)}`);
  chunks.push(dec(ev.chunk.bytes));
}
assert(chunks.length > 0 && chunks.every((c) => typeof c.generation === "string"), "chunks");
const last = chunks.at(-1);
assert(last.stop_reason && last["amazon-bedrock-invocationMetrics"]?.outputTokenCount > 0, `last chunk ${JSON.stringify(last)}`);
ok("invoke-stream", `${chunks.length} chunks`);

// ---- Typed runtime errors.
async function expectError(cls, f, what) {
  try {
    await f();
  } catch (e) {
    assert(e instanceof cls, `${what}: ${e.name} ${e.message}`);
    assert(e.$metadata?.httpStatusCode >= 400, `${what}: status`);
    return e;
  }
  throw new Error(`${what}: no error`);
}
await expectError(ResourceNotFoundException, () => rt.send(new ConverseCommand({
  modelId: "arn:aws:bedrock:us-east-1:123456789012:imported-model/zzzzzzzzzzzz", messages: hello })), "converse unknown model");
await expectError(ValidationException, () => rt.send(new ConverseCommand({
  modelId: modelArn, messages: [{ role: "assistant", content: [{ text: "first" }] }] })), "converse assistant first");
await expectError(ValidationException, () => rt.send(new InvokeModelCommand({
  modelId: modelArn, contentType: "application/json", body: enc({ nothing: true }) })), "invoke bad body");
await expectError(ValidationException, () => rt.send(new ConverseStreamCommand({
  modelId: modelArn, messages: [] })), "converse-stream no messages");
ok("runtime errors");

console.log(`js flow ok (${mode})`);
