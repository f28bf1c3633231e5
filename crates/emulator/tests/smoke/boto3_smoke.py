#!/usr/bin/env python3
"""boto3 against stopd-emulator: the same calls stopd and users' scripts make.

Usage: boto3_smoke.py http://127.0.0.1:PORT   (the emulator seeded with --fleet 150)
Exits non-zero, with the failing check, if boto3 cannot tell the emulator from the service.
"""
import json
import sys

import boto3
import time
import botocore.exceptions

endpoint = sys.argv[1]
cp = boto3.client(
    "codepipeline",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="AKIDEXAMPLE",
    aws_secret_access_key="secret",
    config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 1}),
)

names = [p["name"] for page in cp.get_paginator("list_pipelines").paginate(PaginationConfig={"PageSize": 50}) for p in page["pipelines"]]
assert len(names) == 150, f"expected 150 pipelines, got {len(names)}"

active = []
for name in names:
    for page in cp.get_paginator("list_pipeline_executions").paginate(pipelineName=name):
        for s in page["pipelineExecutionSummaries"]:
            assert s["status"] in {"Cancelled", "InProgress", "Stopped", "Stopping", "Succeeded", "Superseded", "Failed"}
            if s["status"] == "InProgress":
                active.append((name, s["pipelineExecutionId"]))
assert active, "a generated fleet has running executions"

name, eid = active[0]
decl = cp.get_pipeline(name=name)
arn = decl["metadata"]["pipelineArn"]
tags = {t["key"]: t["value"] for t in cp.list_tags_for_resource(resourceArn=arn)["tags"]}
assert "env" in tags, tags
cp.get_pipeline_state(name=name)

cp.stop_pipeline_execution(pipelineName=name, pipelineExecutionId=eid, abandon=False, reason="boto3 smoke")
try:
    cp.stop_pipeline_execution(pipelineName=name, pipelineExecutionId=eid, abandon=False, reason="again")
    raise AssertionError("a second stop-and-wait must be refused")
except cp.exceptions.DuplicatedStopRequestException:
    pass
cp.stop_pipeline_execution(pipelineName=name, pipelineExecutionId=eid, abandon=True, reason="upgrade")
try:
    cp.stop_pipeline_execution(pipelineName=name, pipelineExecutionId=eid, abandon=True)
    raise AssertionError("a second abandon must be refused while the first settles")
except cp.exceptions.DuplicatedStopRequestException:
    pass
# The abandon settles for 1 s (emulated, here real time) before the execution is Stopped.
deadline = time.time() + 5
while True:
    status = cp.get_pipeline_execution(pipelineName=name, pipelineExecutionId=eid)["pipelineExecution"]["status"]
    if status != "Stopping" or time.time() > deadline:
        break
    time.sleep(0.2)
assert status == "Stopped", status
try:
    cp.stop_pipeline_execution(pipelineName=name, pipelineExecutionId=eid, abandon=True)
    raise AssertionError("stopping a stopped execution must be refused")
except cp.exceptions.PipelineExecutionNotStoppableException:
    pass

try:
    cp.get_pipeline(name="does-not-exist")
    raise AssertionError("unknown pipeline")
except cp.exceptions.PipelineNotFoundException:
    pass
try:
    cp.stop_pipeline_execution(pipelineName=name, pipelineExecutionId=eid, reason="x" * 201)
    raise AssertionError("boto3 validates reason length itself, or the emulator must")
except (cp.exceptions.ValidationException, botocore.exceptions.ParamValidationError):
    pass
new = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
assert len(new) == 36

# The event queue (--events-queue stopd-events): SQS's JSON protocol as boto3 speaks it (it
# checks MD5OfBody), with the EventBridge event of the execution just started.
sqs = boto3.client(
    "sqs",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="AKIDEXAMPLE",
    aws_secret_access_key="secret",
    config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 1}),
)
queue_url = sqs.get_queue_url(QueueName="stopd-events")["QueueUrl"]
got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=5)
events = [json.loads(m["Body"]) for m in got.get("Messages", [])]
started = [e for e in events if e["detail"]["execution-id"] == new and e["detail"]["state"] == "STARTED"]
assert started and started[0]["detail-type"] == "CodePipeline Pipeline Execution State Change", events
sqs.delete_message_batch(
    QueueUrl=queue_url,
    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got["Messages"])],
)
depth = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
assert "ApproximateNumberOfMessages" in depth["Attributes"], depth
try:
    sqs.get_queue_url(QueueName="no-such-queue")
    raise AssertionError("unknown queue")
except sqs.exceptions.QueueDoesNotExist:
    pass

print(f"boto3 smoke: ok ({len(names)} pipelines, {len(active)} running, stop/duplicate/upgrade/not-stoppable and the event queue checked)")
