#!/usr/bin/env python3
"""What users write instead of stopd: list every pipeline, list its executions, stop the
InProgress ones. botocore's standard retry mode (3 attempts, backoff on throttling).

    boto3_stop.py URL [--workers N] [--only NAME ...]

--workers 1 is the plain sequential script; more runs pipelines on a thread pool.
Prints one JSON line: {"stopped": [[pipeline, execution], ...], "errors": [...]}.
"""
import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    cp = boto3.client(
        "codepipeline",
        endpoint_url=args.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"mode": "standard"}, max_pool_connections=max(10, args.workers)),
    )
    names = []
    for page in cp.get_paginator("list_pipelines").paginate():
        names += [p["name"] for p in page["pipelines"]]
    if args.only is not None:
        names = [n for n in names if n in set(args.only)]

    def one(name):
        stopped, errors = [], []
        try:
            for page in cp.get_paginator("list_pipeline_executions").paginate(pipelineName=name):
                for s in page["pipelineExecutionSummaries"]:
                    if s["status"] == "InProgress":
                        cp.stop_pipeline_execution(
                            pipelineName=name,
                            pipelineExecutionId=s["pipelineExecutionId"],
                            abandon=False,
                            reason="change freeze",
                        )
                        stopped.append([name, s["pipelineExecutionId"]])
        except Exception as e:  # a user script logs and goes on
            errors.append(f"{name}: {e}")
        return stopped, errors

    stopped, errors = [], []
    if args.workers == 1:
        results = map(one, names)
    else:
        pool = ThreadPoolExecutor(args.workers)
        results = pool.map(one, names)
    for s, e in results:
        stopped += s
        errors += e
    json.dump({"stopped": stopped, "errors": errors}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
