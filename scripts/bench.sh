#!/usr/bin/env bash
# build-relay's benchmarks (docs/PERFORMANCE.md): intake hot path, cold start and peak RSS,
# binary and zip sizes, fan-out, gateway throughput. Each is reported against a baseline
# measured in the same run. Starts moto like the test command and stops it afterwards.
# Usage: scripts/bench.sh [intake|cold_start|size|fanout|throughput|status_page|round_trips ...] (default: all)
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

if wants size; then
    step "size: stripped release binaries and their deflated zips (budget: each function's zip under 2.9 MiB)"
    python3 - "${FUNCTIONS[@]}" hello-lambda <<'PY'
import io, os, sys, zipfile
print("| binary | binary size | zip size | zip x floor |")
print("|---|---|---|---|")
sizes = {}
for name in sys.argv[1:]:
    data = open(f"target/release/{name}", "rb").read()
    archive = io.BytesIO()
    entry = zipfile.ZipInfo("bootstrap")
    entry.compress_type = zipfile.ZIP_DEFLATED
    entry.external_attr = 0o755 << 16
    with zipfile.ZipFile(archive, "w", compresslevel=9) as z:
        z.writestr(entry, data)
    sizes[name] = (len(data), len(archive.getvalue()))
floor = sizes["hello-lambda"][1]
for name, (binary, zipped) in sizes.items():
    print(f"| {name} | {binary / 2**20:.2f} MiB | {zipped / 2**20:.2f} MiB | {zipped / floor:.2f} |")
over = [name for name, (_, zipped) in sizes.items() if zipped / 2**20 >= 2.9]
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
