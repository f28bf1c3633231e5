#!/usr/bin/env python3
"""Event-driven enforcement: start-to-stop latency over many starts, and API calls per hour.

    bench/events.py [--pipelines 100] [--starts 1000] [--rate 20] [--loss 0.05] [--duplicate 0.05]
                    [--jitter 500ms] [--sweep '0 */2 * * * *'] [--idle 60] [--no-build] [--debug]

Starts `stopd-emulator` on a real-time clock with its EventBridge feed on (loss, duplication,
jitter and reordering as asked) and `stopd run` with a freeze in force on every pipeline,
`[events]` on the emulator's queue, and a slow sweep. Then starts `--starts` executions through
CodePipeline's API (boto3) at `--rate` a second, and for each reads from the emulator when it
started and when stopd's StopPipelineExecution for it arrived. Every execution must be stopped
exactly once (those whose event was lost, by the sweep). Prints p50/p90/p99/max of start-to-stop
for the executions stopped from their event, and the lost ones apart.

Then it leaves the daemon idle for `--idle` seconds and counts the calls it made, by service:
the API calls per hour of events + this sweep, against polling every 30 s (a sweep's calls
measured at start-up, times 120). Binaries: $CARGO_TARGET_DIR/release (or debug with --debug).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
import botocore.config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
SQS_OPS = {"ReceiveMessage", "DeleteMessageBatch", "DeleteMessage", "GetQueueAttributes",
           "GetQueueUrl", "SendMessage", "ChangeMessageVisibility"}


def admin(url, method, path, body=None):
    req = urllib.request.Request(
        f"{url}/_emulator/{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))
    return values[k]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipelines", type=int, default=100)
    ap.add_argument("--starts", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=20, help="starts a second")
    ap.add_argument("--loss", type=float, default=0.05)
    ap.add_argument("--duplicate", type=float, default=0.05)
    ap.add_argument("--jitter", default="500ms")
    ap.add_argument("--sweep", default="0 */2 * * * *", help="the daemon's schedule (cron)")
    ap.add_argument("--idle", type=float, default=60, help="seconds of idle to count calls over")
    ap.add_argument("--debug", action="store_true", help="use the debug binaries")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    profile = "debug" if args.debug else "release"
    if not args.no_build:
        cmd = ["cargo", "build", "-p", "stopd", "-p", "stopd-emulator"] + ([] if args.debug else ["--release"])
        subprocess.run(cmd, cwd=ROOT, check=True)
    stopd = os.path.join(TARGET, profile, "stopd")
    emulator = os.path.join(TARGET, profile, "stopd-emulator")

    emu = subprocess.Popen([emulator, "--listen", "127.0.0.1:0", "--events-queue", "stopd-events"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = None
    for _ in range(200):
        m = re.search(r"http://127\.0\.0\.1:\d+", emu.stdout.readline())
        if m:
            url = m.group(0)
            break
    if not url:
        sys.exit("emulator did not start")
    tmp = tempfile.mkdtemp(prefix="stopd-events-bench-")
    daemon = None
    try:
        stage = {"name": "A", "actions": [{"name": "Wait", "category": "Approval", "provider": "Manual",
                                           "duration": "24h"}]}
        names = [f"prod-{i:04}" for i in range(args.pipelines)]
        admin(url, "POST", "seed", {"pipelines": [
            {"name": n, "execution_mode": "PARALLEL", "stages": [stage]} for n in names]})
        admin(url, "POST", "events", {"queue": "stopd-events", "loss": args.loss, "duplicate": args.duplicate,
                                      "jitter": args.jitter, "reorder": True})
        cfg = os.path.join(tmp, "stopd.toml")
        with open(cfg, "w") as f:
            f.write(f"""[aws]
region = "us-east-1"
endpoint_url = "{url}"

[daemon]
database = "{tmp}/audit.db"
schedule = "{args.sweep}"

[[freeze]]
name = "bench-freeze"
start = "2020-01-01T00:00:00Z"
end = "2100-01-01T00:00:00Z"
mode = "abandon"

[events]
queue_url = "{url}/123456789012/stopd-events"
""")
        env = dict(os.environ, STOPD_CONFIG=cfg, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", STOPD_LOG="warn")
        env.pop("AWS_PROFILE", None)
        daemon = subprocess.Popen([stopd, "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The start-up sweep: what one sweep costs.
        deadline = time.time() + 60
        while time.time() < deadline:
            counts = admin(url, "GET", "calls")["counts"]
            if counts.get("ListPipelineExecutions", 0) >= args.pipelines:
                break
            time.sleep(0.2)
        time.sleep(1)
        counts = admin(url, "GET", "calls")["counts"]
        per_sweep = sum(n for op, n in counts.items() if op not in SQS_OPS)

        cp = boto3.client("codepipeline", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x",
                          config=botocore.config.Config(retries={"max_attempts": 1}))
        started = {}
        t0 = time.time()
        for i in range(args.starts):
            due = t0 + i / args.rate
            if due > time.time():
                time.sleep(due - time.time())
            name = names[i % len(names)]
            started[cp.start_pipeline_execution(name=name)["pipelineExecutionId"]] = name
        print(f"{args.starts} starts over {time.time() - t0:.1f} s")

        # Every execution stopped (those whose event was lost, by the next sweep).
        stops = {}
        deadline = time.time() + 900
        while time.time() < deadline:
            calls = admin(url, "GET", "calls")["calls"]
            stops = {}
            for c in calls:
                if c["operation"] == "StopPipelineExecution" and c["execution_id"] in started:
                    stops.setdefault(c["execution_id"], []).append(c["at_ms"])
            if len(stops) == len(started):
                break
            time.sleep(1)
        state = admin(url, "GET", "state")
        start_ms = {e["id"]: e["start_ms"] for p in state["pipelines"] for e in p["executions"]}
        lat = {eid: (min(at) - start_ms[eid]) / 1000 for eid, at in stops.items()}
        twice = [eid for eid, at in stops.items() if len(at) > 1]
        feed = admin(url, "GET", "events")
        by_event = [v for v in lat.values() if v < 5]
        by_sweep = [v for v in lat.values() if v >= 5]
        print(f"stopped {len(stops)}/{len(started)}; stopped twice: {len(twice)}; feed: {feed['stats']}")
        print(f"start-to-stop, all {len(lat)}: p50 {pct(list(lat.values()), 50):.3f} s, "
              f"p99 {pct(list(lat.values()), 99):.3f} s, max {max(lat.values(), default=float('nan')):.3f} s")
        print(f"  from their event ({len(by_event)}): p50 {pct(by_event, 50):.3f} s, p90 {pct(by_event, 90):.3f} s, "
              f"p99 {pct(by_event, 99):.3f} s, max {max(by_event, default=float('nan')):.3f} s")
        if by_sweep:
            print(f"  by the sweep ({len(by_sweep)}, their event lost): max {max(by_sweep):.1f} s "
                  f"(bounded by the schedule {args.sweep!r})")

        # Idle: calls per hour.
        admin(url, "DELETE", "calls")
        time.sleep(args.idle)
        counts = admin(url, "GET", "calls")["counts"]
        sqs = sum(n for op, n in counts.items() if op in SQS_OPS)
        other = sum(n for op, n in counts.items() if op not in SQS_OPS)
        per_hour_sqs = sqs * 3600 / args.idle
        m = re.fullmatch(r"0 \*/(\d+) \* \* \* \*", args.sweep)
        sweeps_per_hour = 60 / int(m.group(1)) if m else float("nan")
        print(f"\nidle {args.idle:.0f} s: {counts}")
        print(f"one sweep of {args.pipelines} pipelines: {per_sweep} CodePipeline calls")
        print(f"polling every 30 s: {per_sweep * 120:.0f} CodePipeline calls an hour")
        print(f"events + a sweep every {60 / sweeps_per_hour:.0f} min: {per_sweep * sweeps_per_hour:.0f} CodePipeline "
              f"calls an hour (+ {other * 3600 / args.idle:.0f} seen idle) and {per_hour_sqs:.0f} SQS calls an hour")
    finally:
        if daemon:
            daemon.terminate()
            daemon.wait(timeout=30)
        emu.terminate()
        emu.wait(timeout=10)


if __name__ == "__main__":
    main()
