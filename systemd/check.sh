#!/usr/bin/env bash
# CI check: the systemd unit's hardening score.
#
#   systemd/check.sh [UNIT] [MAX]      (defaults: systemd/labagent.service, 1.5)
#
# Runs `systemd-analyze security --offline=true` on the unit file (no need to install or run
# it) and fails when the "Overall exposure level" is above MAX. Also runs `systemd-analyze
# verify` for syntax, ignoring only the complaint that /usr/bin/labagent is not installed.
# Installs the systemd package when systemd-analyze is missing (Debian).
set -euo pipefail
cd "$(dirname "$0")"
UNIT=${1:-labagent.service}
MAX=${2:-1.5}

if ! command -v systemd-analyze >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq systemd
fi

# Syntax and semantics. verify wants the unit's binaries to exist; report anything else.
verify=$(systemd-analyze verify "$UNIT" 2>&1 | grep -v 'labagent is not executable' || true)
if [ -n "$verify" ]; then
    echo "$verify" >&2
    echo "check.sh: systemd-analyze verify reported problems in $UNIT" >&2
    exit 1
fi

out=$(systemd-analyze security --offline=true --no-pager "$UNIT" 2>&1) || {
    echo "$out" >&2
    echo "check.sh: systemd-analyze security failed" >&2
    exit 1
}
line=$(printf '%s\n' "$out" | grep 'Overall exposure level' || true)
level=$(printf '%s\n' "$line" | sed -n 's/.*: \([0-9][0-9]*\(\.[0-9]*\)\?\).*/\1/p')
if [ -z "$level" ]; then
    printf '%s\n' "$out" >&2
    echo "check.sh: no 'Overall exposure level' line in the output" >&2
    exit 1
fi
if awk -v l="$level" -v m="$MAX" 'BEGIN { exit !(l > m) }'; then
    printf '%s\n' "$out" | grep '✗' >&2 || true
    echo "check.sh: $UNIT exposure $level is above $MAX" >&2
    exit 1
fi
echo "check.sh: $UNIT exposure $level (<= $MAX) ok"
