#!/usr/bin/env bash
# Starts the stopd-emulator binary on a free port with a generated fleet, runs the boto3 smoke
# script (and one AWS CLI call when the CLI is installed) against it, and stops it.
# Usage: run_smoke.sh PATH/TO/stopd-emulator
set -euo pipefail
bin=${1:?usage: run_smoke.sh PATH/TO/stopd-emulator}
here=$(cd "$(dirname "$0")" && pwd)
log=$(mktemp)
"$bin" --listen 127.0.0.1:0 --fleet 150 --seed 5 --events-queue stopd-events >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
  url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" || true)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { cat "$log"; echo "emulator did not start" >&2; exit 1; }
python3 "$here/boto3_smoke.py" "$url"
if command -v aws >/dev/null 2>&1; then
  AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x aws --region us-east-1 --endpoint-url "$url" \
    codepipeline list-pipelines --max-items 3 --output json >/dev/null
  echo "aws cli smoke: ok"
fi
