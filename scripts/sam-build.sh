#!/usr/bin/env bash
# sam build without Docker: cargo-lambda, with the zig from PyPI as its linker, builds every
# function of template.yaml. arm64 (the template's default) needs the Rust target
# aarch64-unknown-linux-gnu; without it this builds x86_64 and says so. Set ARCHITECTURE to
# choose. Extra arguments go to sam build. Deploy with the same architecture:
#   sam deploy --guided --parameter-overrides Architecture=<the one built>
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv scripts/requirements-test.txt
ensure_venv scripts/requirements-build.txt

architecture=${ARCHITECTURE:-}
if [ -z "$architecture" ]; then
    if rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
        architecture=arm64
    else
        architecture=x86_64
        echo "scripts/sam-build.sh: the aarch64-unknown-linux-gnu target is not installed; building x86_64" >&2
        echo "  (rustup target add aarch64-unknown-linux-gnu for arm64, the template's default)" >&2
    fi
fi
export PATH="$PWD/$VENV/bin:$PATH" SAM_CLI_TELEMETRY=0
exec sam build --parameter-overrides "Architecture=$architecture" "$@"
