# Sourced by the scripts: ensure_venv FILE installs the pinned requirements in FILE into
# ./.venv, once per version of the file.
VENV=.venv

ensure_venv() {
    local requirements=$1 stamp
    stamp="$VENV/.installed-$(basename "$requirements" .txt)"
    if [ -f "$stamp" ] && cmp -s "$requirements" "$stamp"; then
        return
    fi
    printf '\n==> installing %s into %s\n' "$requirements" "$VENV" >&2
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" || { echo "could not create $VENV (on Debian: apt-get install python3-venv)" >&2; exit 1; }
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" ||
        { echo "could not install $requirements from PyPI" >&2; exit 1; }
    cp "$requirements" "$stamp"
}
