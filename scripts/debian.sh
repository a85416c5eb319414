# Sourced by the scripts: Debian packages the tests use, installed with apt-get when missing.
# Without them the tests fail, saying which; they never skip.
#   ensure_rails      ruby-actioncable and puma: metasmoke's websocket as Rails serves it
#                     (local/tests/metasmoke/config.ru)
#   ensure_chromium   chromium: the status page rendered in a real headless browser

# install_debian PACKAGE...: apt-get install, as root or through sudo.
install_debian() {
    printf '\n==> installing %s (Debian packages)\n' "$*" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    command -v apt-get >/dev/null 2>&1 ||
        { echo "$* missing, and there is no apt-get to install them" >&2; exit 1; }
    $sudo apt-get update -qq >&2 &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2 ||
        { echo "could not install $* with apt-get" >&2; exit 1; }
}

rails_present() {
    command -v puma >/dev/null 2>&1 && ruby -e 'require "action_cable"; require "action_dispatch"' >/dev/null 2>&1
}

ensure_rails() {
    rails_present && return
    install_debian ruby-actioncable puma
    rails_present || { echo "ruby-actioncable and puma installed, but ActionCable does not load" >&2; exit 1; }
}

ensure_chromium() {
    command -v chromium >/dev/null 2>&1 && return
    install_debian chromium
    command -v chromium >/dev/null 2>&1 || { echo "chromium installed, but not on PATH" >&2; exit 1; }
}
