#!/usr/bin/env python3
"""Many accounts and regions: one stopd over N accounts x R regions x P pipelines.

    bench/accounts.py [--accounts 20] [--regions eu-west-1,us-east-1] [--pipelines 250]
                      [--latency 25ms] [--rate-limit 20 --burst 10] [--no-build]

Starts the release `stopd-emulator` serving STS and N accounts (each (account, region) world
with its own fleet and its own rate limit: CodePipeline throttles per account and region), then:

1. one sweep (`stopd run --once`, a policy that stops nothing, so every in-scope pipeline is
   read): wall time, peak RSS, and the floor = the busiest pair's calls / rate (pairs run in
   parallel, so the floor of the whole sweep is the slowest pair's);
2. enforcement at a window edge: the daemon running, a freeze over everything opening a few
   seconds later; edge to the last StopPipelineExecution answered, against its floor, and the
   daemon's peak RSS.

Prints Markdown tables; see BENCHMARKS.md.
"""
import argparse
import collections
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import ROOT, STOPD, EMULATOR, admin, measured, span_s  # noqa: E402


def start_emulator(args):
    cmd = [
        EMULATOR, "--listen", "127.0.0.1:0", "--manual-clock",
        "--accounts", str(args.accounts), "--regions", args.regions,
        "--fleet", str(args.pipelines), "--history", "5", "--seed", str(args.seed),
        "--latency", args.latency,
    ]
    if args.rate_limit:
        cmd += ["--rate-limit", str(args.rate_limit), "--burst", str(args.burst)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for _ in range(200):
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:\d+", line)
        if m:
            return proc, m.group(0)
    sys.exit("emulator did not start")


SETTINGS = []


def config(url, db, roles, regions, start, end, schedule="0 0 1 1 *"):
    region_list = ", ".join('"%s"' % r for r in regions)
    accounts = "\n".join(
        '[[account]]\nname = "team-%02d"\nrole_arn = "%s"\nregions = [%s]\n' % (i, arn, region_list)
        for i, arn in enumerate(roles, 1)
    )
    return f"""[aws]
region = "{regions[0]}"
endpoint_url = "{url}"
sts_endpoint_url = "{url}"

[daemon]
database = "{db}"
schedule = "{schedule}"
{chr(10).join(SETTINGS)}

{accounts}
[[freeze]]
name = "bench-freeze"
start = "{start}"
end = "{end}"
rollbacks = true
reason = "change freeze"
"""


def env_for(cfg):
    env = dict(os.environ, STOPD_CONFIG=cfg, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", STOPD_LOG="warn")
    env.pop("AWS_PROFILE", None)
    return env


def by_pair(calls):
    """(account, region) -> [calls], CodePipeline calls only (STS is served by the root)."""
    out = collections.defaultdict(list)
    for c in calls:
        if c["account"]:
            out[(c["account"], c["region"])].append(c)
    return out


def answered(cs):
    """Calls the service let through: a throttled call costs the bucket nothing."""
    return [c for c in cs if c.get("error") != "ThrottlingException"]


def floor_s(pairs, rate, burst):
    """The busiest pair's answered calls at the rate (pairs run in parallel)."""
    if not rate:
        return None
    return max(max(0, len(answered(cs)) - burst) / rate for cs in pairs.values())


def rfc(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=20)
    ap.add_argument("--regions", default="eu-west-1,us-east-1")
    ap.add_argument("--pipelines", type=int, default=250, help="per account and region")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--latency", default="25ms")
    ap.add_argument("--rate-limit", type=float, default=20, help="requests/s per account and region")
    ap.add_argument("--burst", type=float, default=10)
    ap.add_argument("--lead", type=float, default=8, help="seconds from daemon start to the window edge")
    ap.add_argument("--no-edge", action="store_true", help="the sweep only")
    ap.add_argument("--daemon-setting", action="append", default=[], metavar="KEY=VALUE",
                    help="a [daemon] line, e.g. 'discovery_concurrency = 8'")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    span_s(args.latency)
    SETTINGS.extend(args.daemon_setting)
    regions = args.regions.split(",")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "stopd", "-p", "stopd-emulator"],
                       cwd=ROOT, check=True)
    emu, url = start_emulator(args)
    try:
        roles = admin(url, "GET", "accounts")["roles"]
        roles = sorted(roles.keys())
        pairs_n = len(roles) * len(regions)
        with tempfile.TemporaryDirectory() as tmp:
            cfg = os.path.join(tmp, "stopd.toml")
            far = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)
            with open(cfg, "w") as f:
                f.write(config(url, os.path.join(tmp, "sweep.db"), roles, regions, rfc(far), rfc(far + dt.timedelta(days=1))))
            admin(url, "DELETE", "calls?all=true")
            wall, _, err, code, rss, cpu = measured([STOPD, "run", "--once"], env=env_for(cfg))
            if code != 0:
                sys.exit(f"run --once exited {code}:\n{err[-3000:]}")
            got = admin(url, "GET", "calls?all=true")
            pairs = by_pair(got["calls"])
            calls = sum(len(c) for c in pairs.values())
            throttled = sum(1 for cs in pairs.values() for c in cs if c.get("error") == "ThrottlingException")
            sts = sum(1 for c in got["calls"] if not c["account"] and c["operation"] == "AssumeRole")
            floor = floor_s(pairs, args.rate_limit, args.burst)
            print(f"\n### One sweep: {len(roles)} accounts x {len(regions)} regions x {args.pipelines} pipelines"
                  f" ({pairs_n * args.pipelines:,} pipelines), {args.latency} a call, {args.rate_limit:g}/s"
                  f" (burst {args.burst:g}) per account and region\n")
            print("| measurement | value |\n|---|---|")
            print(f"| account-region pairs swept | {len(pairs)} of {pairs_n} |")
            print(f"| CodePipeline calls (throttled) | {calls:,} ({throttled:,}) |")
            print(f"| busiest pair's answered calls | {max(len(answered(c)) for c in pairs.values()):,} |")
            if floor is not None:
                print(f"| floor: (busiest pair's answered calls - burst) / rate | {floor:.2f} s |")
            print(f"| wall time of `run --once` | {wall:.2f} s" + (f" (**{wall / floor:.2f}x** the floor) |" if floor else " |"))
            print(f"| peak RSS | {rss:.1f} MiB |")
            print(f"| CPU time | {cpu:.2f} s |")
            print(f"| most requests in flight at the emulator | {got['max_in_flight']} |")

            if args.no_edge:
                return
            # Enforcement at a window edge, the daemon running.
            admin(url, "DELETE", "calls?all=true")
            edge = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=int(args.lead) + 1)
            with open(cfg, "w") as f:
                f.write(config(url, os.path.join(tmp, "edge.db"), roles, regions, rfc(edge), rfc(edge + dt.timedelta(hours=2))))
            daemon = subprocess.Popen([STOPD, "run"], env=env_for(cfg), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True)
            edge_ms = edge.timestamp() * 1000
            last_seen, quiet_since = 0, None
            deadline = time.time() + args.lead + 600
            while time.time() < deadline:
                time.sleep(1)
                got = admin(url, "GET", "calls?all=true")
                stops = [c for c in got["calls"] if c["operation"] == "StopPipelineExecution"]
                if time.time() * 1000 > edge_ms and stops:
                    if len(stops) == last_seen:
                        quiet_since = quiet_since or time.time()
                        if time.time() - quiet_since > 5:
                            break
                    else:
                        last_seen, quiet_since = len(stops), None
            hwm = None
            try:
                with open(f"/proc/{daemon.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            hwm = int(line.split()[1]) / 1024
            except OSError:
                pass
            daemon.terminate()
            daemon.wait(timeout=60)
            got = admin(url, "GET", "calls?all=true")
            pairs = by_pair([c for c in got["calls"] if c["wall_ms"] >= edge_ms])
            stops = [c for cs in pairs.values() for c in cs
                     if c["operation"] == "StopPipelineExecution" and c["status"] == 200]
            throttled = sum(1 for cs in pairs.values() for c in cs if c.get("error") == "ThrottlingException")
            last = max((c["wall_ms"] for c in stops), default=None)
            floor = floor_s(pairs, args.rate_limit, args.burst)
            print("\n### Enforcement at a window edge (the daemon running)\n")
            print("| measurement | value |\n|---|---|")
            print(f"| executions stopped | {len(stops):,} in {len({(c['account'], c['region']) for c in stops})} account-region pairs |")
            print(f"| calls after the edge (throttled) | {sum(len(c) for c in pairs.values()):,} ({throttled:,}) |")
            if floor is not None:
                print(f"| floor: (busiest pair's answered calls - burst) / rate | {floor:.2f} s |")
            # The stops alone: with the known set they go first, before the reconciling listing.
            stop_floor = None
            if args.rate_limit:
                per_pair = collections.Counter((c["account"], c["region"]) for c in stops)
                stop_floor = max(max(0, n - args.burst) / args.rate_limit for n in per_pair.values())
                print(f"| stop floor: (busiest pair's stops - burst) / rate | {stop_floor:.2f} s |")
            if last is not None:
                took = (last - edge_ms) / 1000
                print(f"| edge to the last stop answered | {took:.2f} s" + (f" (**{took / floor:.2f}x** the floor" if floor else "")
                      + (f", **{took / stop_floor:.2f}x** the stop floor) |" if stop_floor else ") |" if floor else " |"))
            if hwm is not None:
                print(f"| daemon peak RSS (VmHWM) | {hwm:.1f} MiB |")
    finally:
        emu.terminate()
        emu.wait()


if __name__ == "__main__":
    main()
