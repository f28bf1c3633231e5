#!/usr/bin/env python3
"""Failover on PostgreSQL: two `stopd run` on one database, the leader killed (-9) over and over.

    bench/failover.py [--kills 20] [--lease 15s] [--schedule '*/30 * * * * *'] [--pipelines 20]
                      [--postgres postgres://stopd:stopd@127.0.0.1:5432/postgres] [--debug] [--seed 1]

For each kill: waits until a node leads, waits a random time (0 to one schedule interval: mid-
sweep, mid-stop or between sweeps), kills the leader with SIGKILL, at once starts a new
execution of a frozen pipeline (StartPipelineExecution through the emulator), and times how long
until the new leader's StopPipelineExecution for it (the emulator's call log): failover = that
call's arrival - the kill. The killed node is started again, as a standby. At the end: every
execution stopped exactly once (one call each, none lost), each call with exactly one audit
record (so no call was made by a fenced node without its intent), and `stopd verify` intact.
Prints a Markdown table (BENCHMARKS.md, "Failover"). Target: every failover within lease + 3 s.

Needs a PostgreSQL server whose role may create databases (the test server of README
"Development"), boto3, and the binaries: target/release (cargo build --release -p stopd
-p stopd-emulator), or target/debug with --debug.
"""
import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def admin(url, method, path, body=None):
    req = urllib.request.Request(
        f"{url}/_emulator/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def span_s(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)", text)
    if not m:
        sys.exit(f"bad span {text!r}: use e.g. 500ms or 15s")
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


def psql(url, sql):
    subprocess.run(["psql", url, "-qtAc", sql], check=True, stdout=subprocess.DEVNULL)


def fixture(n):
    pipelines = [
        {
            "name": f"prod-{i:03}",
            "stages": [
                {"name": "A", "actions": [{"name": "Wait", "category": "Approval", "provider": "Manual", "duration": "24h"}]}
            ],
            "executions": [{"status": "Succeeded", "started_ago": "30h", "duration": "24h"}],
        }
        for i in range(n)
    ]
    return {"pipelines": pipelines}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--lease", default="15s")
    ap.add_argument("--schedule", default="*/30 * * * * *")
    ap.add_argument("--pipelines", type=int, default=20)
    ap.add_argument("--postgres", default=os.environ.get("STOPD_TEST_POSTGRES", "postgres://stopd:stopd@127.0.0.1:5432/postgres"))
    ap.add_argument("--debug", action="store_true", help="use target/debug binaries")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    import boto3  # noqa: E402 (only needed here)

    rng = random.Random(args.seed)
    profile = "debug" if args.debug else "release"
    stopd = os.path.join(TARGET, profile, "stopd")
    emulator_bin = os.path.join(TARGET, profile, "stopd-emulator")
    lease = span_s(args.lease)
    interval = 30.0
    m = re.fullmatch(r"\*/(\d+) \* \* \* \* \*", args.schedule)
    if m:
        interval = float(m.group(1))

    tmp = tempfile.mkdtemp(prefix="stopd-failover-")
    db = f"stopd_failover_{os.getpid()}"
    psql(args.postgres, f"CREATE DATABASE {db}")
    parsed = urllib.parse.urlparse(args.postgres)
    password = parsed.password or ""
    netloc = f"{parsed.username}@{parsed.hostname}:{parsed.port or 5432}"
    url = urllib.parse.urlunparse((parsed.scheme, netloc, f"/{db}", "", "", ""))
    with open(os.path.join(tmp, "db-password"), "w") as f:
        f.write(password + "\n")

    emu = subprocess.Popen([emulator_bin, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    endpoint = None
    for _ in range(200):
        line = emu.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        if found:
            endpoint = found.group(0)
            break
    if not endpoint:
        sys.exit("emulator did not start")
    admin(endpoint, "POST", "seed", fixture(args.pipelines))
    cp = boto3.client(
        "codepipeline", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="x"
    )

    configs = {}
    for node in ("a", "b"):
        path = os.path.join(tmp, f"stopd-{node}.toml")
        with open(path, "w") as f:
            f.write(
                f"""[aws]
region = "us-east-1"
endpoint_url = "{endpoint}"

[daemon]
database = "{url}"
database_password_file = "{tmp}/db-password"
schedule = "{args.schedule}"

[ha]
node = "{node}"
lease = "{args.lease}"

[[freeze]]
name = "release"
start = "2020-01-01T00:00:00Z"
end = "2100-01-01T00:00:00Z"
mode = "abandon"
"""
            )
        configs[node] = path

    def env(node):
        e = dict(os.environ, STOPD_CONFIG=configs[node], AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", STOPD_LOG="warn")
        e.pop("AWS_PROFILE", None)
        return e

    logs = {}

    def start(node):
        log = open(os.path.join(tmp, f"{node}.log"), "a")
        logs[node] = log
        return subprocess.Popen([stopd, "run"], env=env(node), stdout=log, stderr=log)

    def leader():
        out = subprocess.run([stopd, "status", "--format", "json"], env=env("a"), capture_output=True, text=True)
        try:
            return json.loads(out.stdout)["ha"]["leader"]
        except (ValueError, KeyError, TypeError):
            return None

    def stop_calls():
        calls = admin(endpoint, "GET", "calls")["calls"]
        return [c for c in calls if c["operation"] == "StopPipelineExecution"]

    procs = {"a": start("a")}
    time.sleep(0.5)
    procs["b"] = start("b")
    failovers = []
    started = []
    try:
        for k in range(args.kills):
            deadline = time.time() + 4 * lease + 30
            while (who := leader()) is None:
                if time.time() > deadline:
                    sys.exit(f"kill {k}: no leader within {4 * lease + 30:.0f} s (logs in {tmp})")
                time.sleep(0.05)
            time.sleep(rng.uniform(0, interval))
            who = leader() or who
            t_kill = time.time()
            procs[who].send_signal(signal.SIGKILL)
            procs[who].wait()
            pipeline = f"prod-{rng.randrange(args.pipelines):03}"
            execution = cp.start_pipeline_execution(name=pipeline)["pipelineExecutionId"]
            started.append(execution)
            while True:
                hit = [c for c in stop_calls() if c.get("execution_id") == execution]
                if hit:
                    failovers.append(hit[0]["wall_ms"] / 1000 - t_kill)
                    break
                if time.time() - t_kill > 4 * lease + 60:
                    sys.exit(f"kill {k}: {execution} never stopped (logs in {tmp})")
                time.sleep(0.02)
            procs[who] = start(who)
            print(f"kill {k + 1:2}/{args.kills}: {who} killed, new execution stopped after {failovers[-1]:.2f} s", file=sys.stderr)
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()

    calls = stop_calls()
    per_execution = {}
    for c in calls:
        per_execution[c["execution_id"]] = per_execution.get(c["execution_id"], 0) + 1
    report = json.loads(subprocess.run([stopd, "report", "--format", "json"], env=env("a"), capture_output=True, text=True, check=True).stdout)
    recorded = {}
    for r in report:
        recorded[r["execution_id"]] = recorded.get(r["execution_id"], 0) + 1
    duplicated_calls = sum(n - 1 for n in per_execution.values() if n > 1)
    duplicated_records = sum(n - 1 for n in recorded.values() if n > 1)
    lost = sum(1 for e in started if e not in per_execution)
    unrecorded_calls = sum(1 for e in per_execution if e not in recorded)
    verify = subprocess.run([stopd, "verify"], env=env("a"), capture_output=True, text=True)
    target = lease + 3
    print(f"\n{args.kills} kills of the leader, lease {args.lease}, schedule `{args.schedule}`, {args.pipelines} pipelines ({profile} build)\n")
    print("| kills | failover min | p50 | max | target (lease + 3 s) | over target | lost | duplicated calls | duplicated records | calls without a record | verify |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {len(failovers)} | {min(failovers):.2f} s | {statistics.median(failovers):.2f} s | {max(failovers):.2f} s | {target:.0f} s "
        f"| {sum(1 for f in failovers if f > target)} | {lost} | {duplicated_calls} | {duplicated_records} | {unrecorded_calls} "
        f"| {'intact' if verify.returncode == 0 else 'BROKEN'} |"
    )
    emu.terminate()
    psql(args.postgres, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    bad = lost or duplicated_calls or duplicated_records or unrecorded_calls or verify.returncode != 0
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
