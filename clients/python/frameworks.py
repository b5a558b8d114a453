"""The agent frameworks people put on Bedrock, against the local Bedrock: LiteLLM, Strands Agents, LangChain.

Usage: python frameworks.py MODEL_ARN [litellm|strands|langchain ...]   (all three when none is named)

The model is the real demo model (a Llama-architecture instruct model): its own chat template and context fit
the frameworks' tool prompts, and it ends its answers, which a random tiny model never does. Endpoint, region and
credentials come from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; each framework
is given the endpoint its own way (noted where it is) and nothing else. Tool calls are forced (`tool_choice`
required / a named tool) so that constrained decoding guarantees them; answers are checked for shape, not
content. Prints one `ok <framework> <step>` line per step; crates/cmi/tests/clients.rs checks them.
"""

import asyncio
import json
import os
import sys

ARN = sys.argv[1]
WHICH = sys.argv[2:] or ["litellm", "strands", "langchain"]
ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
REGION = os.environ.get("AWS_REGION", "us-east-1")

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
    "required": ["city"],
    "additionalProperties": False,
}


def ok(framework, step, detail=""):
    print(f"ok {framework} {step} {detail}".rstrip(), flush=True)


def litellm_suite():
    import litellm

    # LiteLLM reads no AWS_ENDPOINT_URL: the Bedrock runtime endpoint is its own `aws_bedrock_runtime_endpoint`
    # parameter (or AWS_BEDROCK_RUNTIME_ENDPOINT); credentials and region come from the environment as boto3's do.
    kw = {"aws_bedrock_runtime_endpoint": ENDPOINT, "aws_region_name": REGION, "temperature": 0}
    greet = [{"role": "user", "content": "Say hello in one short sentence."}]
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                               "parameters": WEATHER_SCHEMA}}]
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]

    # The llama and deepseek_r1 routes send the Llama body, whose prompt LiteLLM writes itself: the bare text for
    # llama (no chat template), to which the demo model at once answers nothing. LiteLLM takes an empty
    # `generation` for an error ("Error parsing received text="), as it would from Bedrock, so those routes are
    # given text to continue.
    story = [{"role": "user", "content": "Once upon a time, there was a"}]
    for route in ["converse", "llama", "deepseek_r1", "openai"]:
        model = f"bedrock/{route}/{ARN}"
        hello = story if route in ("llama", "deepseek_r1") else greet
        r = litellm.completion(model=model, messages=hello, max_tokens=12, **kw)
        choice = r.choices[0]
        assert isinstance(choice.message.content, str), r
        assert choice.finish_reason in ("stop", "length"), r
        assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, (route, r.usage)
        ok("litellm", f"{route} completion", f"{choice.finish_reason} usage={r.usage.prompt_tokens}+{r.usage.completion_tokens}")

        text, finish, chunks = "", None, 0
        for chunk in litellm.completion(model=model, messages=hello, max_tokens=12, stream=True, **kw):
            chunks += 1
            delta = chunk.choices[0].delta
            text += (delta.content or "") + (getattr(delta, "reasoning_content", None) or "")
            finish = chunk.choices[0].finish_reason or finish
        if route == "openai":
            # Finding: LiteLLM reads the openai route's InvokeModelWithResponseStream with its generic decoder, which
            # knows the Llama, Titan, Cohere and Converse chunk keys but not an OpenAI `chat.completion.chunk` (its
            # moonshot route gets the OpenAI decoder, this one does not), so the text is lost and one empty chunk
            # with finish_reason "stop" comes out. The server streams the chunks the OpenAI format defines (boto3
            # reads them); the client's reading is LiteLLM's, so only the call's completing is asserted here.
            assert finish == "stop", (route, chunks, finish)
        else:
            assert chunks > 1 and finish in ("stop", "length"), (route, chunks, finish)
        ok("litellm", f"{route} stream", f"{chunks} chunks {finish}")

    # Tools: Converse (toolChoice any) and the OpenAI chat body (tool_choice required), streaming too.
    for route in ["converse", "openai"]:
        model = f"bedrock/{route}/{ARN}"
        r = litellm.completion(model=model, messages=ask, tools=tools, tool_choice="required", max_tokens=64, **kw)
        calls = r.choices[0].message.tool_calls
        assert calls and calls[0].function.name == "get_weather", r
        assert json.loads(calls[0].function.arguments)["city"] in ("Paris", "Oslo"), calls
        assert r.choices[0].finish_reason == "tool_calls", r
        ok("litellm", f"{route} tools", calls[0].function.arguments)

        # The tool's result back, and an answer.
        follow = ask + [r.choices[0].message.model_dump(exclude_none=True),
                        {"role": "tool", "tool_call_id": calls[0].id, "content": json.dumps({"tempC": 21})}]
        r2 = litellm.completion(model=model, messages=follow, tools=tools, max_tokens=32, **kw)
        assert r2.choices[0].finish_reason in ("stop", "length", "tool_calls"), r2
        ok("litellm", f"{route} tool result", r2.choices[0].finish_reason)

    model = f"bedrock/converse/{ARN}"
    name, args, finish = None, "", None
    for chunk in litellm.completion(model=model, messages=ask, tools=tools, tool_choice="required", max_tokens=64,
                                    stream=True, **kw):
        for tc in chunk.choices[0].delta.tool_calls or []:
            name = tc.function.name or name
            args += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather" and json.loads(args)["city"] in ("Paris", "Oslo"), (name, args)
    assert finish == "tool_calls", finish
    ok("litellm", "converse stream tools", args)


def strands_suite():
    from strands import Agent, tool
    from strands.middleware import InvokeModelStage
    from strands.models import BedrockModel

    calls = []

    @tool
    def get_weather(city: str) -> dict:
        """Weather for a city.

        Args:
            city: The city, Paris or Oslo.
        """
        calls.append(city)
        return {"city": city, "tempC": 21}

    def model(**extra):
        # Strands' BedrockModel takes the endpoint as `endpoint_url` (its boto3 client would also read
        # AWS_ENDPOINT_URL); region and credentials from the environment.
        return BedrockModel(model_id=ARN, endpoint_url=ENDPOINT, region_name=REGION, temperature=0, max_tokens=48,
                            **extra)

    def force_first_call(context):
        # The test's own choice, not client configuration: a 135M model does not pick a tool by itself, so the turn's
        # first model call names the tool (Converse toolChoice, which constrained decoding honours); the call after the
        # tool's result is left to the model.
        last = context.messages[-1]["content"] if context.messages else []
        if not any("toolResult" in block for block in last):
            return context.replace(tool_choice={"tool": {"name": "get_weather"}})
        return context

    for streaming in (True, False):
        agent = Agent(model=model(streaming=streaming), tools=[get_weather], callback_handler=None)
        agent.add_middleware(InvokeModelStage.Input, force_first_call)
        before = len(calls)
        result = agent("What is the weather in Paris? Answer in one sentence.")
        assert len(calls) == before + 1 and calls[-1] in ("Paris", "Oslo"), calls
        kinds = [next(iter(b)) for m in agent.messages for b in m["content"]]
        assert "toolUse" in kinds and "toolResult" in kinds, kinds
        assert result.stop_reason in ("end_turn", "max_tokens"), result.stop_reason
        assert result.metrics.accumulated_usage["outputTokens"] > 0, result.metrics.accumulated_usage
        ok("strands", f"agent turn with a tool ({'stream' if streaming else 'converse'})", f"{calls[-1]} {result.stop_reason}")

    async def stream_events():
        agent = Agent(model=model(), tools=[get_weather], callback_handler=None)
        agent.add_middleware(InvokeModelStage.Input, force_first_call)
        deltas, tool_events = 0, 0
        async for event in agent.stream_async("Weather in Oslo?"):
            if "data" in event:
                deltas += 1
            if event.get("current_tool_use"):
                tool_events += 1
        return deltas, tool_events

    deltas, tool_events = asyncio.run(stream_events())
    assert deltas > 0 and tool_events > 0, (deltas, tool_events)
    ok("strands", "stream_async", f"{deltas} text deltas, {tool_events} tool-use events")


def langchain_suite():
    from langchain_aws import ChatBedrockConverse
    from langchain_core.messages import ToolMessage
    from pydantic import BaseModel, Field

    # ChatBedrockConverse takes `endpoint_url`; an ARN names no provider, so `provider` says what the model is, as
    # the framework asks for every ARN (without it streaming falls back to one Converse call, with a warning).
    # LangChain also decides from the model id which tool choices a model takes, and grants an ARN none, so the
    # ones Converse takes for an imported model are declared (`supports_tool_choice_values`).
    def chat(max_tokens):
        return ChatBedrockConverse(model=ARN, provider="meta", supports_tool_choice_values=("auto", "any", "tool"),
                                   endpoint_url=ENDPOINT, region_name=REGION, temperature=0, max_tokens=max_tokens)

    llm = chat(24)
    # A tool call in the model's syntax, or a JSON answer, takes more tokens than a greeting.
    long = chat(80)
    r = llm.invoke("Say hello in one short sentence.")
    assert isinstance(r.content, str) and r.usage_metadata["output_tokens"] > 0, r
    assert r.response_metadata["stopReason"] in ("end_turn", "max_tokens"), r.response_metadata
    ok("langchain", "invoke", r.response_metadata["stopReason"])

    chunks = list(llm.stream("Say hello in one short sentence."))
    assert len(chunks) > 1, chunks
    ok("langchain", "stream", f"{len(chunks)} chunks")

    class Weather(BaseModel):
        """Weather for a city."""

        city: str = Field(description="Paris or Oslo", json_schema_extra={"enum": ["Paris", "Oslo"]})

    bound = long.bind_tools([Weather], tool_choice="Weather")
    q = "What is the weather in Paris?"
    m = bound.invoke(q)
    assert m.tool_calls and m.tool_calls[0]["name"] == "Weather", m
    assert m.tool_calls[0]["args"]["city"] in ("Paris", "Oslo"), m.tool_calls
    ok("langchain", "bind_tools", json.dumps(m.tool_calls[0]["args"]))
    answer = llm.bind_tools([Weather]).invoke(
        [("human", q), m, ToolMessage(content=json.dumps({"tempC": 21}), tool_call_id=m.tool_calls[0]["id"])]
    )
    assert answer.response_metadata["stopReason"] in ("end_turn", "max_tokens", "tool_use"), answer
    ok("langchain", "tool result", answer.response_metadata["stopReason"])

    class Person(BaseModel):
        """A person."""

        name: str = Field(max_length=16)
        age: int = Field(ge=0, le=120)

    for method in ("function_calling", "json_schema"):
        p = long.with_structured_output(Person, method=method).invoke("Describe a fictional person.")
        assert isinstance(p, Person), p
        ok("langchain", f"with_structured_output ({method})", p.model_dump_json())


for name in WHICH:
    {"litellm": litellm_suite, "strands": strands_suite, "langchain": langchain_suite}[name]()
    print(f"{name} suite ok", flush=True)
