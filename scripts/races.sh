#!/usr/bin/env bash
# The reconcile races, many rounds each (the test suite runs 3): two passes at once, a pass
# beside a push, a status or an approval delivery, and a pass that overran its lease beside
# the next; each on the embedded store and on DynamoDB (moto, requests serialised).
# Starts moto on a free 127.0.0.1 port and stops it afterwards.
# Usage: scripts/races.sh [ROUNDS]     (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venv.sh
source scripts/moto.sh

ensure_venv scripts/requirements-test.txt
start_moto
export RELAY_RACE_ROUNDS="${1:-100}"
printf '\n==> reconcile races, %s rounds each\n' "$RELAY_RACE_ROUNDS" >&2
cargo nextest run --locked -p integration-tests --test reconcile --no-fail-fast \
    -E 'test(/two_passes_at_once|racing|overrunning/)'
