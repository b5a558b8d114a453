"""A minimal MCP server on stdio (newline-delimited JSON-RPC, standard library only) for mcp-tools' tests.

Tools: `hello` (no arguments), `echo` (returns its `text`), `fail` (an error result), `crash` (the process exits mid-call), `hang` (never
answers), and one whose name Bedrock would refuse (`weird.name/with spaces`).
"""
import json
import sys

NO_ARGS = {"type": "object", "properties": {}, "additionalProperties": False}
TOOLS = [
    {"name": "hello", "description": "Say hello.", "inputSchema": NO_ARGS},
    {"name": "echo", "description": "Echo the text back.",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
    {"name": "fail", "description": "Always fails.", "inputSchema": {"type": "object"}},
    {"name": "crash", "description": "Exits mid-call.", "inputSchema": NO_ARGS},
    {"name": "hang", "description": "Never answers.", "inputSchema": {"type": "object"}},
    {"name": "weird.name/with spaces", "inputSchema": {"type": "object"}},
]


def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    if not line.strip():
        continue
    req = json.loads(line)
    method, rid = req.get("method"), req.get("id")
    if rid is None:
        continue
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": rid, "result": {
            "protocolVersion": req["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "stub", "version": "1.0.0"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        name = req["params"]["name"]
        args = req["params"].get("arguments") or {}
        if name == "hello":
            send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": "hello from stub"}]}})
        elif name == "echo":
            send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": args.get("text", "")}]}})
        elif name == "fail":
            send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": "it failed"}], "isError": True}})
        elif name == "crash":
            sys.stderr.write("stub: crashing on purpose\n")
            sys.stderr.flush()
            sys.exit(3)
        elif name == "hang":
            pass  # never answered; later requests still are
        else:
            send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": "weird ok"}]}})
    elif method == "ping":
        send({"jsonrpc": "2.0", "id": rid, "result": {}})
    else:
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "no such method"}})
