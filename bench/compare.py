#!/usr/bin/env python3
"""stopd against what users run instead, on one emulated fleet, in one run.

    bench/compare.py [--pipelines 1000] [--latency 25ms] [--rate-limit TPS --burst B]
                     [--contenders stopd,boto3,boto3-pool,cli] [--cli-subset 15] [--throttle-every N]
                     [--enforcement] [--idle] [--daemon-setting 'stop_concurrency = 16']
                     [--notify] [--metrics] [--schedule CRON] [--idle-seconds 10] [--no-build]

Starts the release `stopd-emulator` (building both binaries first), and for each contender
resets it to the same generated fleet (same seed), runs the contender once, and reads what it
did from the emulator's call log: wall time, calls by operation, throttles, stops, peak RSS and
CPU time of the process. Every contender must stop exactly the executions stopd stops (the CLI
loop: on its subset), or the run is void. Prints a Markdown table; see BENCHMARKS.md.

With --notify the daemon (--enforcement, --idle) posts `stopped`/`failed` to a webhook receiver
in this process, which answers 200 and keeps each body: after the edge the harness waits for
every stop's notification and checks they came once each, in the order the audit log recorded
the outcomes. --metrics adds `[metrics]` on a free loopback port. Binaries come from
$CARGO_TARGET_DIR/release (default target/release); --no-build uses them as they are.
"""
import argparse
import http.server
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
STOPD = os.path.join(TARGET, "release", "stopd")
EMULATOR = os.path.join(TARGET, "release", "stopd-emulator")


def span_s(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)", text)
    if not m:
        sys.exit(f"bad span {text!r}: use e.g. 25ms or 1s")
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


class Db:
    """The few reads the harness makes of the audit log, on SQLite (a path) or PostgreSQL (a URL)."""

    def __init__(self, where):
        self.where = where
        self.sqlite = None if where.startswith("postgres") else sqlite3.connect(where)

    def execute(self, sql):
        if self.sqlite is not None:
            return self.sqlite.execute(sql)
        out = subprocess.run(["psql", self.where, "-qtAF", "\t", "-c", sql], check=True, capture_output=True, text=True).stdout
        return Rows([tuple(line.split("\t")) for line in out.splitlines() if line])

    def close(self):
        if self.sqlite is not None:
            self.sqlite.close()


class Rows(list):
    def fetchone(self):
        row = self[0] if self else (None,)
        return tuple(int(v) if v.isdigit() else (v or None) for v in row)


def admin(url, method, path, body=None):
    req = urllib.request.Request(
        f"{url}/_emulator/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def start_emulator(args):
    # A manual clock: executions do not progress during a run, so every contender, however
    # slow, faces the same running executions (and the stop sets can be compared).
    cmd = [EMULATOR, "--listen", "127.0.0.1:0", "--manual-clock"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for _ in range(200):
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:\d+", line)
        if m:
            return proc, m.group(0)
    sys.exit("emulator did not start")


def fresh_fleet(url, args):
    admin(url, "POST", "reset")
    # The generator's rng is the world's: reset re-seeds it, so every contender gets the same
    # pipelines, executions and ids.
    admin(url, "POST", "fleet", {"pipelines": args.pipelines, "seed": args.seed, "history": 5})
    # reset keeps the fault plan (unless ?faults=true); set it anyway: this run's latency and
    # rate limits (per operation: the plan's default rate_limit_scope).
    plan = {"latency": {"fixed": args.latency}}
    if args.rate_limit:
        plan["default_rate_limit"] = {"tps": args.rate_limit, "burst": args.burst}
        plan["rate_limit_scope"] = args.rate_limit_scope
    if args.throttle_every:
        # Every n-th call of every operation answered ThrottlingException, on top of the limit.
        plan["rules"] = [{"fault": "throttling", "every": args.throttle_every}]
    if args.throttle_share:
        # A share of calls, at random, answered ThrottlingException, on top of the limit.
        plan["rules"] = [{"fault": "throttling", "probability": args.throttle_share}]
    admin(url, "PUT", "faults", plan)
    admin(url, "DELETE", "calls")


def op_counts(url):
    """Calls served so far, by operation: cheap (no call records), so a harness that polls it
    takes no CPU from the daemon it measures. (Polling the whole log, thousands of records, ten
    times a second did: it slowed the edges it was timing.)"""
    return admin(url, "GET", f"calls?since={2**63}")["counts"]


def call_log(url):
    got = admin(url, "GET", "calls")
    calls = got["calls"]
    stops = sorted(
        (c["pipeline"], c["execution_id"])
        for c in calls
        if c["operation"] == "StopPipelineExecution" and c["status"] == 200
    )
    throttles = sum(1 for c in calls if c.get("error") == "ThrottlingException")
    last_stop_ms = max(
        (c["at_ms"] for c in calls if c["operation"] == "StopPipelineExecution" and c["status"] == 200),
        default=None,
    )
    return got["counts"], stops, throttles, last_stop_ms


def measured(cmd, env=None):
    """Runs cmd; returns (wall s, stdout, stderr, exit code, peak RSS MiB, CPU s) of that process."""
    start = time.monotonic()
    with tempfile.TemporaryFile(mode="w+") as errf:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, env=env, text=True)
        out = proc.stdout.read()
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - start
        errf.seek(0)
        err = errf.read()
    return wall, out, err, proc.returncode, ru.ru_maxrss / 1024, ru.ru_utime + ru.ru_stime


class Receiver:
    """A webhook receiver on 127.0.0.1: answers 200 (HTTP/1.1, keep-alive) and keeps each JSON
    body with its arrival time (ms since the epoch)."""

    def __init__(self):
        got = self.got = []
        lock = self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with lock:
                    got.append((time.time() * 1000, json.loads(body)))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self):
        with self.lock:
            return list(self.got)


def stopd_config(url, db, start=None, schedule="0 0 1 1 *", extra=(), end=None, gate=False, tail=""):
    start = start or "2020-01-01T00:00:00Z"
    end = end or "2100-01-01T00:00:00Z"
    return f"""[aws]
region = "us-east-1"
endpoint_url = "{url}"

[daemon]
database = "{db}"
schedule = "{schedule}"
{chr(10).join(extra)}

[[freeze]]
name = "bench-freeze"
start = "{start}"
end = "{end}"
rollbacks = true
reason = "change freeze"
gate = {"true" if gate else "false"}
{tail}"""


def stopd_env(cfg):
    env = dict(os.environ, STOPD_CONFIG=cfg, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", STOPD_LOG="warn")
    env.pop("AWS_PROFILE", None)
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipelines", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--latency", default="25ms")
    ap.add_argument("--rate-limit", type=float, default=None, help="per-operation requests/s")
    ap.add_argument("--burst", type=float, default=5)
    ap.add_argument("--rate-limit-scope", choices=["operation", "account"], default="operation",
                    help="one bucket per operation (default), or one for every operation")
    ap.add_argument("--edge-after", type=float, default=4, metavar="SECONDS",
                    help="with --enforcement: the window opens this long after the daemon starts "
                         "(rate-bound: long enough for its start-up sweep to list the fleet)")
    ap.add_argument("--throttle-share", type=float, default=None, metavar="P",
                    help="also answer a random share P of calls with ThrottlingException")
    ap.add_argument("--throttle-every", type=int, default=None, metavar="N",
                    help="also answer every N-th call of each operation with ThrottlingException (2: every other call)")
    ap.add_argument("--contenders", default="stopd,boto3,boto3-pool,cli")
    ap.add_argument("--cli-subset", type=int, default=15)
    ap.add_argument("--pool", type=int, default=16)
    ap.add_argument("--enforcement", action="store_true", help="measure the running daemon at a window edge")
    ap.add_argument("--idle", action="store_true", help="RSS and CPU of the daemon between sweeps")
    ap.add_argument("--gate", action="store_true",
                    help="with --enforcement: the freeze gates (every stage after the first) and ends 10 s after it opens; "
                         "time from each edge to the last transition disabled / enabled")
    ap.add_argument("--daemon-setting", action="append", default=[], metavar="KEY=VALUE",
                    help="extra [daemon] line for stopd's config, e.g. 'stop_concurrency = 16' (repeatable)")
    ap.add_argument("--notify", action="store_true",
                    help="with --enforcement/--idle: a [[notify]] webhook (stopped, failed) to a receiver in this process")
    ap.add_argument("--metrics", action="store_true", help="with --enforcement/--idle: [metrics] on a free loopback port")
    ap.add_argument("--schedule", default="0 0 1 1 *",
                    help="the daemon's schedule (--enforcement/--idle); default: never during the run")
    ap.add_argument("--idle-seconds", type=float, default=10, help="how long --idle watches the daemon")
    ap.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    ap.add_argument("--postgres", metavar="URL", default=None,
                    help="keep stopd's audit log on PostgreSQL: a fresh database per run on this server "
                         "(a role that may create databases), instead of a SQLite file")
    args = ap.parse_args()

    def new_db(tmp, stem):
        """A fresh audit database: a SQLite path, or (--postgres) a new PostgreSQL database's URL."""
        if not args.postgres:
            return os.path.join(tmp, f"{stem}-{time.time_ns()}.db")
        name = f"stopd_bench_{os.getpid()}_{time.time_ns()}"
        subprocess.run(["psql", args.postgres, "-qtAc", f"CREATE DATABASE {name}"], check=True, stdout=subprocess.DEVNULL)
        parsed = urllib.parse.urlparse(args.postgres)
        return urllib.parse.urlunparse(parsed._replace(path=f"/{name}"))

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "stopd", "-p", "stopd-emulator"], cwd=ROOT, check=True)
    latency = span_s(args.latency)
    emu, url = start_emulator(args)
    tmp = tempfile.mkdtemp(prefix="stopd-bench-")
    rows, reference = [], None
    per = "per operation" if args.rate_limit_scope == "operation" else "shared by the operations"
    regime = f"rate-bound ({args.rate_limit:g}/s {per}, burst {args.burst:g})" if args.rate_limit else "latency-bound"
    if args.throttle_every:
        regime += f", every {args.throttle_every}. call throttled"
    if args.throttle_share:
        regime += f", {args.throttle_share:.0%} of calls throttled at random"
    try:
        for who in args.contenders.split(","):
            fresh_fleet(url, args)
            if who == "stopd":
                cfg = os.path.join(tmp, "stopd.toml")
                with open(cfg, "w") as f:
                    f.write(stopd_config(url, new_db(tmp, "audit"), extra=args.daemon_setting))
                wall, out, err, rc, rss, cpu = measured([STOPD, "run", "--once"], stopd_env(cfg))
                if rc != 0:
                    sys.exit(f"stopd exited {rc}: {err}")
            elif who in ("boto3", "boto3-pool"):
                workers = 1 if who == "boto3" else args.pool
                wall, out, err, rc, rss, cpu = measured([sys.executable, os.path.join(ROOT, "bench", "boto3_stop.py"), url, "--workers", str(workers)])
                if rc != 0:
                    sys.exit(f"{who} exited {rc}: {err}")
            elif who == "cli":
                names = sorted({p for p, _ in reference})[: args.cli_subset] if reference else []
                wall, out, err, rc, rss, cpu = measured([os.path.join(ROOT, "bench", "cli_stop.sh"), url, *names])
            else:
                sys.exit(f"unknown contender {who}")
            counts, stops, throttles, _ = call_log(url)
            if who == "stopd":
                reference = stops
                verdict = "reference"
            elif who == "cli":
                subset = {p for p, _ in stops} | set(names)
                expected = [s for s in reference if s[0] in subset]
                verdict = "same" if stops == expected else f"VOID ({len(stops)} vs {len(expected)})"
            else:
                verdict = "same" if stops == reference else f"VOID ({len(stops)} vs {len(reference)})"
            rows.append((who, wall, sum(counts.values()), counts, throttles, len(stops), rss, cpu, verdict))
            print(f"  {who}: {wall:.2f}s, {sum(counts.values())} calls, {len(stops)} stops, {verdict}", file=sys.stderr)

        # The floor: the fewest calls, at the allowed rate, plus one latency chain.
        n = args.pipelines
        stops = len(reference or [])
        need = {"ListPipelines": math.ceil(n / 1000), "ListPipelineExecutions": n, "StopPipelineExecution": stops}
        chain = 3 * latency
        if args.rate_limit:
            floor = max(max(0.0, c - args.burst) / args.rate_limit for c in need.values()) + chain
        else:
            floor = chain
        print(f"\n{n} pipelines, {stops} executions in progress; {regime}; latency {args.latency} per call\n")
        print("| contender | wall | vs floor | API calls | by operation (LP/LPE/Stop/other) | throttles | stops | peak RSS | CPU | check |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for who, wall, total, counts, thr, nstops, rss, cpu, verdict in rows:
            other = total - sum(counts.get(k, 0) for k in need)
            ops = f"{counts.get('ListPipelines', 0)}/{counts.get('ListPipelineExecutions', 0)}/{counts.get('StopPipelineExecution', 0)}/{other}"
            print(f"| {who} | {wall:.2f} s | {wall / floor:.1f}x | {total} | {ops} | {thr} | {nstops} | {rss:.1f} MiB | {cpu:.2f} s | {verdict} |")
        print(f"\nfloor: {sum(need.values())} calls ({need['ListPipelines']} LP + {n} LPE + {stops} stops)"
              + (f" at {args.rate_limit:g}/s per operation" if args.rate_limit else "") + f" + {chain * 1000:.0f} ms latency chain = {floor:.2f} s")
        base = {r[0]: r[1] for r in rows}
        if "stopd" in base and "boto3" in base:
            print(f"stopd is {base['boto3'] / base['stopd']:.1f}x faster than the sequential boto3 script")

        if args.enforcement or args.idle:
            fresh_fleet(url, args)
            start = time.time() + args.edge_after
            start_s = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.ceil(start)))
            start_ms = math.ceil(start) * 1000
            cfg = os.path.join(tmp, "daemon.toml")
            end_ms = start_ms + 10_000
            end_s = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end_ms / 1000))
            tail = ""
            hook = None
            if args.metrics:
                tail += '\n[metrics]\nlisten = "127.0.0.1:0"\n'
            if args.notify:
                hook = Receiver()
                tail += f'\n[[notify]]\nname = "bench"\nurl = "{hook.url}"\nformat = "json"\nevents = ["stopped", "failed"]\n'
            with open(cfg, "w") as f:
                dbpath = new_db(tmp, "daemon")
                f.write(stopd_config(url, dbpath, start=start_s, extra=args.daemon_setting,
                                     end=end_s if args.gate else None, gate=args.gate,
                                     schedule=args.schedule, tail=tail))
            d = subprocess.Popen([STOPD, "run"], env=stopd_env(cfg), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

            def sample():
                """The daemon's CPU seconds so far and its VmRSS (MiB)."""
                with open(f"/proc/{d.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                ticks = int(fields[11]) + int(fields[12])
                with open(f"/proc/{d.pid}/status") as f:
                    rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
                return ticks / os.sysconf("SC_CLK_TCK"), rss / 1024
            try:
                want = len(reference or [])
                deadline = time.time() + args.edge_after + 120
                while time.time() < deadline:
                    # The cheap count first; the whole log only to confirm.
                    if (op_counts(url).get("StopPipelineExecution", 0) >= want
                            and time.time() * 1000 > start_ms
                            and len(call_log(url)[1]) >= want):
                        break
                    time.sleep(0.1)
                _, s, thr, _ = call_log(url)
                if args.enforcement:
                    # Where the time after the edge went, from the emulator's call log.
                    calls = admin(url, "GET", "calls")["calls"]
                    after = [c for c in calls if c["wall_ms"] >= start_ms - 1000]
                    def rel(ms):
                        return f"{(ms - start_ms) / 1000:+.3f} s"
                    for op in ("ListPipelines", "ListPipelineExecutions", "GetPipelineExecution", "GetPipelineState",
                               "DisableStageTransition", "StopPipelineExecution"):
                        at = [c["wall_ms"] for c in after if c["operation"] == op]
                        if at:
                            print(f"  {op}: {len(at)} calls, first {rel(min(at))}, last {rel(max(at))}")
                    db = Db(dbpath)
                    # The emulator has answered every stop; wait for the log to have every outcome.
                    deadline = time.time() + 30
                    while (db.execute("SELECT COUNT(*) FROM stop_outcomes").fetchone()[0] < want
                           and time.time() < deadline):
                        time.sleep(0.05)
                    last = db.execute("SELECT MAX(o.at) FROM stop_outcomes o").fetchone()[0]
                    db.close()
                    last_ms = datetime.fromisoformat(last.replace("Z", "+00:00")).timestamp() * 1000
                    edge = (last_ms - start_ms) / 1000
                    if args.rate_limit:
                        # The stops alone at the stop rate (the known set needs no listing first).
                        stop_floor = max(0.0, want - args.burst) / args.rate_limit + latency
                        floor_text = f"stop floor {stop_floor:.2f} s: {edge / stop_floor:.2f}x"
                    else:
                        floor_text = f"floor {floor:.2f} s"
                    print(f"\nenforcement: window opened {start_s}; {len(s)}/{want} stops, the last answered "
                          f"{edge:.2f} s after the window opened ({floor_text}); {thr} throttles"
                          + ("; webhook configured" if hook else "; no webhook"))
                    if hook:
                        # Every outcome's notification, once, in the order the log recorded them.
                        db = Db(dbpath)
                        order = [r[0] for r in db.execute(
                            "SELECT s.execution_id FROM stop_outcomes o JOIN stops s ON s.id = o.stop_id "
                            "WHERE o.outcome != 'dry_run' ORDER BY o.at, o.stop_id")]
                        db.close()
                        deadline = time.time() + 120
                        while len(hook.events()) < len(order) and time.time() < deadline:
                            time.sleep(0.05)
                        got = hook.events()
                        ids = [b.get("execution_id") for _, b in got]
                        dups = len(ids) - len(set(ids))
                        # Out of order: a notification whose `at` is before the one received
                        # before it (by how much, at most).
                        ats = [datetime.fromisoformat(b["at"].replace("Z", "+00:00")).timestamp() * 1000 for _, b in got]
                        back = [a - b for a, b in zip(ats, ats[1:]) if b < a]
                        if not back:
                            # Outcomes of the same millisecond may come in either order.
                            verdict = "in order of occurrence" + ("" if ids == order else " (ties within a millisecond swapped)")
                        else:
                            verdict = (f"OUT OF ORDER: {len(back)} received after a later outcome, "
                                       f"by at most {max(back):.0f} ms")
                        first_ms, last_ms = (got[0][0], got[-1][0]) if got else (float("nan"),) * 2
                        print(f"notifications: {len(got)}/{len(order)} delivered, {dups} duplicates, "
                              f"{verdict}; first received "
                              f"{(first_ms - start_ms) / 1000:+.2f} s, last {(last_ms - start_ms) / 1000:+.2f} s after the edge "
                              f"({len(got) / max((last_ms - first_ms) / 1000, 1e-3):.0f}/s)")
                    print(f"daemon CPU so far (start-up sweep, edge sweep{', deliveries' if hook else ''}): {sample()[0]:.2f} s; "
                          f"TCP connections opened so far: {admin(url, 'GET', 'calls').get('connections', 'n/a')}")
                    if args.gate:
                        # Wait for the end edge and the gates to open again.
                        while time.time() * 1000 < end_ms + 15_000:
                            n = op_counts(url)
                            enabled = n.get("EnableStageTransition", 0)
                            if enabled and enabled >= n.get("DisableStageTransition", 0) and time.time() * 1000 > end_ms + 2000:
                                break
                            time.sleep(0.2)
                        got = admin(url, "GET", "calls")
                        calls = got["calls"]
                        print(f"TCP connections opened in all (both edges): {got.get('connections', 'n/a')}; "
                              f"daemon CPU in all: {sample()[0]:.2f} s")
                        def ops(lo, hi):
                            got = {}
                            for c in calls:
                                if lo <= c["wall_ms"] < hi:
                                    got[c["operation"]] = got.get(c["operation"], 0) + 1
                            return got
                        for name, edge, op in (("opens", start_ms, "DisableStageTransition"), ("closes", end_ms, "EnableStageTransition")):
                            at = [c["wall_ms"] for c in calls if c["operation"] == op and c["wall_ms"] >= edge - 1000]
                            window = ops(edge - 1000, (end_ms if name == "opens" else end_ms + 15_000))
                            print(f"gate {name}: {len(at)} {op} calls, the last {(max(at) - edge) / 1000 if at else float('nan'):+.2f} s "
                                  f"after the edge; calls around the edge: {window}")
                if args.idle:
                    def listings():
                        return admin(url, "GET", "calls")["counts"].get("ListPipelines", 0)
                    time.sleep(2)
                    c0, _ = sample()
                    l0 = listings()
                    time.sleep(args.idle_seconds)
                    c1, rss = sample()
                    sweeps = listings() - l0
                    with open(f"/proc/{d.pid}/smaps_rollup") as f:
                        kb = {l.split()[0].rstrip(":"): int(l.split()[1]) for l in f if l.split()[-1] == "kB"}
                    with open(f"/proc/{d.pid}/status") as f:
                        hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
                    what = [w for w, on in (("[metrics]", args.metrics), ("one [[notify]]", args.notify)) if on]
                    print(f"idle daemon ({sweeps} sweeps in {args.idle_seconds:g} s; {', '.join(what) or 'no metrics, no webhook'}): "
                          f"VmRSS {rss:.1f} MiB (anonymous {kb['Anonymous'] / 1024:.1f} MiB, "
                          f"file-backed {(kb['Rss'] - kb['Anonymous']) / 1024:.1f} MiB), VmHWM {hwm:.1f} MiB, "
                          f"CPU {100 * (c1 - c0) / args.idle_seconds:.2f} % over {args.idle_seconds:g} s")
            finally:
                d.terminate()
                d.wait(timeout=30)
    finally:
        emu.terminate()
        emu.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
