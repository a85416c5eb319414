#!/usr/bin/env bash
# build-relay's whole test suite, from a fresh machine:
#   1. installs the pinned tools of scripts/requirements-test.txt (moto, cfn-lint, SAM CLI)
#      into ./.venv, once, and Debian's ruby-actioncable, puma and chromium when missing
#      (the bridge tests run metasmoke's websocket as Rails serves it; the status page is
#      rendered in a headless browser),
#   2. starts moto_server on a free 127.0.0.1 port,
#   3. runs cargo fmt --check, cargo clippy -D warnings, cfn-lint and sam validate --lint on
#      template.yaml, builds the function binaries (the runtime-API tests run them; the dev
#      profile, so that the tests' build shares every dependency with them), runs every
#      test, and builds the benchmarks (also in the dev profile: scripts/bench.sh runs them
#      optimised),
#   4. stops moto again, also when a step fails.
# Usage: scripts/test.sh [extra arguments for the test runner, e.g. a test name filter]
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venv.sh
source scripts/moto.sh
source scripts/debian.sh
FUNCTIONS=(github-status github-push github-pull-request ws-connect ws-disconnect ws-message ws-keepalive reconcile status-page)

# Each step says when it starts (seconds since the command began), for where the minutes go.
step() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*" >&2; }
die() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo is not installed (https://rustup.rs)"
command -v python3 >/dev/null || die "python3 is not installed (needed for moto)"

ensure_venv scripts/requirements-test.txt
ensure_rails
ensure_chromium
start_moto

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "template.yaml: cfn-lint and sam validate --lint"
"$VENV/bin/cfn-lint" template.yaml
SAM_CLI_TELEMETRY=0 "$VENV/bin/sam" validate --lint --region us-east-1 --template-file template.yaml

step "function binaries (dev profile, shared with the tests' build)"
cargo build --locked $(printf -- '-p %s ' "${FUNCTIONS[@]}")

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
    # .config/nextest.toml: four at a time, the slowest first.
    cargo nextest run --locked --workspace --no-fail-fast "$@"
else
    cargo test --locked --workspace --no-fail-fast "$@"
fi

step "benchmarks build (dev profile; scripts/bench.sh runs them optimised)"
cargo build --locked -p build-relay -p integration-tests \
    --bench intake --bench cold_start --bench fanout --bench throughput --bench status_page
