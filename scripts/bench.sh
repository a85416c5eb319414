#!/usr/bin/env bash
# build-relay's benchmarks (docs/PERFORMANCE.md): intake hot path, cold start and peak RSS,
# binary and zip sizes, fan-out, gateway throughput. Each is reported against a baseline
# measured in the same run. Starts moto like the test command and stops it afterwards.
# Usage: scripts/bench.sh [intake|cold_start|size|fanout|throughput|status_page|round_trips ...] (default: all)
# BEFORE=<git revision> also builds that revision's release binaries (in a worktree under
# target/) and measures them beside these in the same run: size and cold_start.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
source scripts/moto.sh

FUNCTIONS=(github-status github-push github-pull-request ws-connect ws-disconnect ws-message ws-keepalive reconcile status-page)
selected=("$@")
[ ${#selected[@]} -gt 0 ] || selected=(intake cold_start size fanout throughput status_page round_trips)
wants() { [[ " ${selected[*]} " == *" $1 "* ]]; }
step() { printf '\n==> %s\n' "$*" >&2; }

step "release binaries (the functions and the hello-lambda floor)"
cargo build --locked --release $(printf -- '-p %s ' "${FUNCTIONS[@]}") -p hello-lambda

if [ -n "${BEFORE:-}" ]; then
    step "release binaries of $BEFORE, for before and after"
    tree=target/before-tree
    git worktree remove --force "$tree" 2>/dev/null || rm -rf "$tree"
    git worktree add --detach "$tree" "$BEFORE" >/dev/null
    trap 'git worktree remove --force "$tree" 2>/dev/null || true; stop_servers' EXIT
    (cd "$tree" && CARGO_TARGET_DIR="$PWD/../before-target" \
        cargo build --locked --release $(printf -- '-p %s ' "${FUNCTIONS[@]}"))
    export RELAY_BENCH_BEFORE="$PWD/target/before-target/release"
fi

if wants size; then
    step "size: stripped release binaries and their deflated zips (budget: each function's zip under 2.9 MiB)"
    python3 - "${FUNCTIONS[@]}" hello-lambda <<'PY'
import io, os, sys, zipfile

def sizes(path):
    data = open(path, "rb").read()
    archive = io.BytesIO()
    entry = zipfile.ZipInfo("bootstrap")
    entry.compress_type = zipfile.ZIP_DEFLATED
    entry.external_attr = 0o755 << 16
    with zipfile.ZipFile(archive, "w", compresslevel=9) as z:
        z.writestr(entry, data)
    return len(data), len(archive.getvalue())

before = os.environ.get("RELAY_BENCH_BEFORE")
now = {name: sizes(f"target/release/{name}") for name in sys.argv[1:]}
floor = now["hello-lambda"][1]
mib = lambda n: f"{n / 2**20:.2f} MiB"
print("| binary | binary size | zip size | zip x floor |" + (" zip before |" if before else ""))
print("|---|---|---|---|" + ("---|" if before else ""))
for name, (binary, zipped) in now.items():
    row = f"| {name} | {mib(binary)} | {mib(zipped)} | {zipped / floor:.2f} |"
    if before and name != "hello-lambda":
        row += f" {mib(sizes(os.path.join(before, name))[1])} |"
    elif before:
        row += " |"
    print(row)
over = [name for name, (_, zipped) in now.items() if zipped / 2**20 >= 2.9]
if over:
    sys.exit(f"over budget (zip of 2.9 MiB or more): {', '.join(over)}")
PY
fi

if wants intake; then
    step "intake hot path (criterion)"
    cargo bench --locked -p build-relay --bench intake
fi

needs_moto=false
for b in cold_start fanout throughput status_page round_trips; do wants "$b" && needs_moto=true; done
if $needs_moto; then
    ensure_venv scripts/requirements-test.txt
    start_moto
fi
for bench in cold_start fanout throughput status_page round_trips; do
    if wants "$bench"; then
        step "$bench"
        cargo bench --locked -p integration-tests --bench "$bench"
    fi
done
