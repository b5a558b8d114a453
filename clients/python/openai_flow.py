"""The official OpenAI Python SDK against the local Bedrock's OpenAI-compatible surfaces.

Configured only as a user would: OPENAI_BASE_URL (the server's /openai/v1) and OPENAI_API_KEY (its Bedrock API
key). argv[1] is the model (an imported model's name or ARN). Prints one line per check; any failure raises.
"""

import json
import sys

import openai

model = sys.argv[1]
client = openai.OpenAI(max_retries=8)

# A whole chat completion.
r = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0
)
assert r.object == "chat.completion", r
assert r.choices[0].message.role == "assistant", r
assert r.usage.completion_tokens >= 1 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
print("openai-python chat ok")

# Streamed, with usage.
chunks = list(
    client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert any(c.choices and c.choices[0].finish_reason for c in chunks), chunks
assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1, chunks[-1]
print("openai-python stream ok", repr(text[:40]))

# A forced tool call, its arguments holding to a schema without additionalProperties (as pydantic writes them).
tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "enum": ["Paris", "Tokyo"]}},
                "required": ["city"],
            },
        },
    }
]
r = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "What is the weather in Tokyo?"}],
    tools=tools,
    tool_choice="required",
    max_tokens=64,
    temperature=0,
)
call = r.choices[0].message.tool_calls[0]
args = json.loads(call.function.arguments)
assert call.function.name == "get_weather" and set(args) == {"city"}, (call, args)
assert r.choices[0].finish_reason == "tool_calls", r
print("openai-python forced tool call ok", args)

# Structured output.
schema = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["answer"],
    "additionalProperties": False,
}
r = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Is Paris in France? Answer in JSON."}],
    response_format={"type": "json_schema", "json_schema": {"name": "yes_no", "schema": schema}},
    max_tokens=32,
    temperature=0,
)
assert json.loads(r.choices[0].message.content)["answer"] in ("yes", "no"), r
print("openai-python structured output ok")

# The Responses API, whole and streamed.
r = client.responses.create(model=model, input="Say hello.", max_output_tokens=8, temperature=0)
assert r.object == "response" and r.status in ("completed", "incomplete"), r
assert isinstance(r.output_text, str) and r.usage.output_tokens >= 1, r
events = [e.type for e in client.responses.create(model=model, input="Say hello.", max_output_tokens=8, stream=True)]
assert events[0] == "response.created" and events[-1] in ("response.completed", "response.incomplete"), events
print("openai-python responses ok")

# A model that does not exist is the SDK's typed error.
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])
except openai.NotFoundError as e:
    assert e.status_code == 404, e
    print("openai-python not found ok")
else:
    raise AssertionError("no error for an unknown model")
print("openai-python flow ok")
