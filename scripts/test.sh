#!/usr/bin/env bash
# build-relay's whole test suite, from a fresh machine:
#   1. installs a pinned moto[server] into ./.venv (once),
#   2. starts moto_server on a free 127.0.0.1 port,
#   3. runs cargo fmt --check, cargo clippy -D warnings, every test, and the benchmark build,
#   4. stops moto again, also when a step fails.
# Usage: scripts/test.sh [extra arguments for the test runner, e.g. a test name filter]
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION=5.2.5
VENV=.venv

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo is not installed (https://rustup.rs)"
command -v python3 >/dev/null || die "python3 is not installed (needed for moto)"

ensure_moto() {
    if [ -x "$VENV/bin/moto_server" ] &&
        "$VENV/bin/python" -c "import sys, moto; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
        return
    fi
    step "installing moto[server]==$MOTO_VERSION into $VENV"
    python3 -m venv "$VENV" || die "could not create $VENV (on Debian: apt-get install python3-venv)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" ||
        die "could not install moto[server]==$MOTO_VERSION from PyPI"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

MOTO_PID=""
stop_servers() {
    if [ -n "$MOTO_PID" ]; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

start_moto() {
    local port
    port=$(free_port)
    mkdir -p target
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >target/moto.log 2>&1 &
    MOTO_PID=$!
    for _ in $(seq 1 150); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            export RELAY_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
            step "moto_server $MOTO_VERSION listening on $RELAY_TEST_DYNAMODB_ENDPOINT (pid $MOTO_PID)"
            return
        fi
        kill -0 "$MOTO_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat target/moto.log >&2
    die "moto_server did not start"
}

# The SDK clients in the tests talk to local servers only: fixed fake credentials, a
# region, and no instance-metadata lookups.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN

ensure_moto
start_moto

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --workspace --no-fail-fast "$@"
else
    cargo test --locked --workspace --no-fail-fast "$@"
fi
