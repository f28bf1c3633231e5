#!/usr/bin/env python3
"""What one `[[notify]]` poll costs the audit database as history grows.

    bench/notify_poll.py [--stops 100000]

Creates an audit database with the release `stopd` (all migrations: `stopd exempt add` on an
empty file), fills it with N stops and their outcomes, every one already delivered to the
target, one every 5 minutes up to now, and times the query a delivery round runs for stop
outcomes (crates/daemon/src/runtime/notify/message.rs, `undelivered`) in three shapes: from the target's first
day without the time index (what every poll read before the read indexes), from the first day
with it (a task's first round, once per start), and from an hour before the newest record
delivered or the last round that found nothing (every later round). The daemon's task polls
once a second on the one connection sweeps write on. Binaries from $CARGO_TARGET_DIR/release.
"""
import argparse
import datetime
import os
import sqlite3
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
STOPD = os.path.join(TARGET, "release", "stopd")

QUERY = """SELECT o.stop_id, o.at, s.pipeline, s.execution_id, s.rule, o.outcome, s.reason, o.error
FROM stop_outcomes o {hint} JOIN stops s ON s.id = o.stop_id
WHERE o.at >= ?2 AND o.outcome != 'dry_run'
  AND NOT EXISTS (SELECT 1 FROM notify_delivered d WHERE d.target = ?1 AND d.source = 'stop_outcomes' AND d.source_id = o.stop_id)
ORDER BY o.at, o.stop_id LIMIT 200"""


def ts(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stops", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="stopd-notify-poll-") as tmp:
        db_path = os.path.join(tmp, "audit.db")
        cfg = os.path.join(tmp, "stopd.toml")
        with open(cfg, "w") as f:
            f.write(f'[daemon]\ndatabase = "{db_path}"\n')
        subprocess.run([STOPD, "--config", cfg, "exempt", "add", "--pipeline", "none", "--for", "1h",
                        "--reason", "create the database"], check=True, capture_output=True)
        db = sqlite3.connect(db_path)
        now = datetime.datetime.now(datetime.timezone.utc)
        first = now - datetime.timedelta(minutes=5 * args.stops)
        db.execute("INSERT INTO notify_targets VALUES ('chat', ?)", (ts(first),))
        for i in range(args.stops):
            at = ts(first + datetime.timedelta(minutes=5 * i))
            db.execute("INSERT INTO stops (id, at, pipeline, execution_id, rule, rule_kind, mode, reason, explanation, dry_run) "
                       "VALUES (?, ?, ?, ?, 'weekend', 'freeze', 'finish', 'change freeze', 'in window', 0)",
                       (i + 1, at, f"prod-{i % 1000:04d}", f"exec-{i}"))
            db.execute("INSERT INTO stop_outcomes (stop_id, at, outcome, attempts, throttled, elapsed_ms) "
                       "VALUES (?, ?, 'stopped', 1, 0, 25)", (i + 1, at))
            db.execute("INSERT INTO notify_delivered (at, target, source, source_id, attempts) "
                       "VALUES (?, 'chat', 'stop_outcomes', ?, 1)", (at, i + 1))
        db.commit()

        def timed(hint, since):
            q = QUERY.format(hint=hint)
            db.execute(q, ("chat", since)).fetchall()
            n, start = 20, time.perf_counter()
            for _ in range(n):
                db.execute(q, ("chat", since)).fetchall()
            return (time.perf_counter() - start) / n * 1000

        hour_before_newest = ts(now - datetime.timedelta(hours=1))
        rows = [
            ("every poll before: from the target's first day, no time index", timed("NOT INDEXED", ts(first))),
            ("a task's first round: from the target's first day, time index", timed("", ts(first))),
            ("every later round: from an hour before the newest delivered", timed("", hour_before_newest)),
        ]
        print(f"\n{args.stops:,} stops, all delivered; one stop-outcome read of a delivery round:\n")
        print("| read | time |\n|---|---|")
        for what, ms in rows:
            print(f"| {what} | {ms:.2f} ms |")


if __name__ == "__main__":
    main()
