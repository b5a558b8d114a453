"""The official MCP Python SDK drives `cmi mcp` over stdio: list its tools, check a model folder, import it into the
local Bedrock (with progress notifications), follow the job, list and export the registered model.

Usage: mcp_flow.py CMI_EXECUTABLE MODEL_DIR NAME (the environment points `cmi` at the local Bedrock).
"""
import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters, stdio_client

EXPECTED = {"check_model_folder", "repair_template", "import_model", "import_job_status", "list_import_jobs",
            "list_models", "export_model"}


def result_json(result):
    assert not result.is_error, result
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


async def main(cmi, model_dir, name):
    params = StdioServerParameters(command=cmi, args=["mcp"], env=dict(os.environ))
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            print("ok initialize", init.server_info.name)

            tools = {t.name for t in (await session.list_tools()).tools}
            missing = EXPECTED - tools
            assert not missing, f"missing tools {missing}; got {tools}"
            print("ok list-tools", len(tools))

            report = result_json(await session.call_tool("check_model_folder", {"path": model_dir}))
            assert report["instruct_supported"] is True, report
            assert not [f for f in report["findings"] if f["severity"] == "error"], report
            print("ok check", report["architecture"])

            notes = []

            async def progress(done, total, message):
                notes.append(message)

            imported = result_json(await session.call_tool(
                "import_model", {"source": model_dir, "name": name}, progress_callback=progress))
            arn = imported["modelArn"]
            assert arn.startswith("arn:aws:bedrock:"), imported
            assert notes, "no progress notifications"
            assert any("import job" in (n or "") for n in notes), notes
            print("ok import", arn, len(notes), "progress notifications")

            jobs = json.loads((await session.call_tool("list_import_jobs", {})).content[0].text)
            job = next(j for j in jobs if j["importedModelName"] == name)
            status = result_json(await session.call_tool("import_job_status", {"job": job["jobArn"]}))
            assert status["status"] == "Completed", status
            assert status["importedModelArn"] == arn, status
            print("ok job-status", status["status"])

            # One JSON object a line, as `cmi models list --json` prints them.
            listed = (await session.call_tool("list_models", {})).content[0].text
            models = [json.loads(line) for line in listed.splitlines() if line.strip()]
            assert any(m.get("name") == name for m in models), models
            print("ok list-models")

            export = await session.call_tool("export_model", {"name": name})
            assert not export.is_error and arn in export.content[0].text, export
            print("ok export")

            bad = await session.call_tool("check_model_folder", {"path": "/nonexistent-model-folder"})
            assert bad.is_error and "nonexistent-model-folder" in bad.content[0].text, bad
            print("ok named-error")
    print("mcp-python flow ok")


asyncio.run(main(*sys.argv[1:4]))
