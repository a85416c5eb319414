# Sourced by the scripts: ensure_rails installs Debian's ruby-actioncable (Rails' ActionCable)
# and puma when missing, so that the bridge tests can run metasmoke's websocket as Rails
# serves it (local/tests/metasmoke/config.ru). It fails, never skips, when they cannot be had.

rails_present() {
    command -v puma >/dev/null 2>&1 && ruby -e 'require "action_cable"; require "action_dispatch"' >/dev/null 2>&1
}

ensure_rails() {
    rails_present && return
    printf '\n==> installing ruby-actioncable and puma (Debian packages)\n' >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    command -v apt-get >/dev/null 2>&1 ||
        { echo "ruby-actioncable and puma are missing and there is no apt-get to install them" >&2; exit 1; }
    $sudo apt-get update -qq >&2 &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq ruby-actioncable puma >&2 ||
        { echo "could not install ruby-actioncable and puma with apt-get" >&2; exit 1; }
    rails_present || { echo "ruby-actioncable and puma installed, but ActionCable does not load" >&2; exit 1; }
}
