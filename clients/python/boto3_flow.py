"""Drives the local Bedrock with boto3, an independent client: S3 (incl. multipart), an import job, and the runtime.

Usage: python boto3_flow.py MODEL_DIR   (endpoint, region and credentials from AWS_ENDPOINT_URL, AWS_REGION,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). Set CMI_BOTO3_RUNTIME=1 to also run Converse / ConverseStream with tools
(needs a server built with the inference engine). Run by crates/cmi/tests/clients.rs.
"""

import json
import os
import sys
import time

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

model_dir = sys.argv[1]
endpoint = os.environ["AWS_ENDPOINT_URL"]
region = os.environ.get("AWS_REGION", "us-east-1")
cfg = Config(retries={"total_max_attempts": 10, "mode": "standard"}, s3={"addressing_style": "path"})
s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region, config=cfg)
br = boto3.client("bedrock", endpoint_url=endpoint, region_name=region, config=cfg)

s3.create_bucket(Bucket="boto3-models")
for name in sorted(os.listdir(model_dir)):
    s3.upload_file(os.path.join(model_dir, name), "boto3-models", f"tiny/{name}")
keys = [o["Key"] for o in s3.list_objects_v2(Bucket="boto3-models", Prefix="tiny/")["Contents"]]
assert "tiny/config.json" in keys, keys

# Multipart: 12 MiB with a 5 MiB threshold and part size (boto3 sends its default checksums).
big = os.path.join(model_dir, "..", "big.bin")
with open(big, "wb") as f:
    f.write(os.urandom(12 * 1024 * 1024))
tc = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
s3.upload_file(big, "boto3-models", "big.bin", Config=tc)
got = s3.get_object(Bucket="boto3-models", Key="big.bin")["Body"].read()
assert got == open(big, "rb").read(), "multipart object differs"
head = s3.head_object(Bucket="boto3-models", Key="big.bin")
assert head["ContentLength"] == 12 * 1024 * 1024
print("s3 ok: %d model files, multipart etag %s" % (len(keys), head["ETag"]))

arn = br.create_model_import_job(
    jobName="boto3-job",
    importedModelName="boto3-tiny",
    roleArn="arn:aws:iam::123456789012:role/Import",
    modelDataSource={"s3DataSource": {"s3Uri": "s3://boto3-models/tiny/"}},
)["jobArn"]
for _ in range(600):
    job = br.get_model_import_job(jobIdentifier=arn)
    if job["status"] != "InProgress":
        break
    time.sleep(0.1)
assert job["status"] == "Completed", job
model_arn = job["importedModelArn"]
m = br.get_imported_model(modelIdentifier=model_arn)
print("import ok:", m["modelName"], m["modelArchitecture"], "instructSupported=%s" % m["instructSupported"])
assert any(s["modelArn"] == model_arn for s in br.list_imported_models()["modelSummaries"])
try:
    br.create_model_import_job(jobName="boto3-job", importedModelName="other", roleArn="arn:aws:iam::123456789012:role/I",
                               modelDataSource={"s3DataSource": {"s3Uri": "s3://boto3-models/tiny/"}})
    raise AssertionError("duplicate job name accepted")
except br.exceptions.ConflictException:
    pass

if os.environ.get("CMI_BOTO3_RUNTIME") == "1":
    rt = boto3.client("bedrock-runtime", endpoint_url=endpoint, region_name=region, config=cfg)
    r = rt.converse(modelId=model_arn, messages=[{"role": "user", "content": [{"text": "Hello"}]}],
                    inferenceConfig={"maxTokens": 16, "temperature": 0})
    print("converse ok:", r["stopReason"], r["usage"])
    tools = {"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather for a city",
                                      "inputSchema": {"json": {"type": "object",
                                                               "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
                                                               "required": ["city"], "additionalProperties": False}}}}],
             "toolChoice": {"any": {}}}
    stream = rt.converse_stream(modelId=model_arn, messages=[{"role": "user", "content": [{"text": "Weather in Paris?"}]}],
                                toolConfig=tools, inferenceConfig={"maxTokens": 64, "temperature": 0})
    events, tool_input, stop = [], "", None
    for ev in stream["stream"]:
        events.append(next(iter(ev)))
        if "contentBlockDelta" in ev and "toolUse" in ev["contentBlockDelta"]["delta"]:
            tool_input += ev["contentBlockDelta"]["delta"]["toolUse"]["input"]
        if "messageStop" in ev:
            stop = ev["messageStop"]["stopReason"]
    assert stop == "tool_use", (stop, events)
    print("converse-stream with tools ok:", json.loads(tool_input))
    body = json.dumps({"prompt": "Hello", "max_gen_len": 8, "temperature": 0})
    out = json.loads(rt.invoke_model(modelId=model_arn, body=body)["body"].read())
    print("invoke ok:", out["stop_reason"])

print("boto3 flow ok")
