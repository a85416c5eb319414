# Sourced by the scripts: start_moto starts moto_server (from ./.venv) on a free 127.0.0.1
# port, exports RELAY_TEST_DYNAMODB_ENDPOINT, and stops it when the script exits.

# The SDK clients talk to local servers only: fixed fake credentials, a region, and no
# instance-metadata lookups.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN

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
            printf '\n==> moto_server listening on %s (pid %s)\n' "$RELAY_TEST_DYNAMODB_ENDPOINT" "$MOTO_PID" >&2
            return
        fi
        kill -0 "$MOTO_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat target/moto.log >&2
    echo "moto_server did not start" >&2
    exit 1
}

