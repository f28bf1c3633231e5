#!/usr/bin/env bash
# The AWS CLI shell loop users write, over the pipelines named as arguments:
#   cli_stop.sh URL NAME...
# Prints "pipeline execution" for each stop made.
set -uo pipefail
url=$1; shift
export AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=""
for p in "$@"; do
  for id in $(aws --endpoint-url "$url" codepipeline list-pipeline-executions \
      --pipeline-name "$p" --query 'pipelineExecutionSummaries[?status==`InProgress`].pipelineExecutionId' \
      --output text); do
    aws --endpoint-url "$url" codepipeline stop-pipeline-execution --pipeline-name "$p" \
      --pipeline-execution-id "$id" --no-abandon --reason "change freeze" >/dev/null && echo "$p $id"
  done
done
