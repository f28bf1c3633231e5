#!/usr/bin/env bash
# Checks the unit the way CI does: `systemd-analyze verify` (with ExecStart pointed at a built
# binary, since /usr/local/bin/stopd does not exist on a build machine) and
# `systemd-analyze security --offline=true`, which must score 2.0 or lower ("OK").
# Usage: systemd/check.sh PATH/TO/stopd
set -euo pipefail
bin=$(realpath "${1:?usage: systemd/check.sh PATH/TO/stopd}")
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "systemd-analyze not installed: cannot check the unit" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s#/usr/local/bin/stopd#$bin#g" "$here/stopd.service" >"$tmp/stopd.service"
systemd-analyze verify "$tmp/stopd.service"
echo "systemd-analyze verify: clean"
# The secret files' LoadCredential= lines ship commented: check them as an operator enables them.
mkdir "$tmp/with-credentials"
sed 's/^#LoadCredential=/LoadCredential=/' "$tmp/stopd.service" >"$tmp/with-credentials/stopd.service"
grep -q '^LoadCredential=' "$tmp/with-credentials/stopd.service" || { echo "no LoadCredential= lines" >&2; exit 1; }
# verify only warns (exit 0) about a bad credential name: any output fails the check.
out=$(systemd-analyze verify "$tmp/with-credentials/stopd.service" 2>&1)
[ -z "$out" ] || { echo "$out" >&2; exit 1; }
echo "systemd-analyze verify with LoadCredential=: clean"
score=$(systemd-analyze security --offline=true "$tmp/stopd.service" 2>&1 | grep -o 'Overall exposure level for stopd.service: [0-9.]*' | awk '{print $NF}')
[ -n "$score" ] || { echo "no exposure score" >&2; exit 1; }
echo "systemd-analyze security: $score"
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || { echo "exposure $score is above 2.0" >&2; exit 1; }
