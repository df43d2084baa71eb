#!/usr/bin/env sh
# One-command set-up and run for a fresh machine: makes .venv, installs vitviz with its
# dependencies through pip (which takes this machine's torch wheels from disk), then acts.
#   packaging/dev.sh app [ARGS...]   launch vitviz (no ARGS: the bundled sample scene)
#   packaging/dev.sh test [ARGS...]  run the whole test suite (pytest ARGS)
#   packaging/dev.sh cli ARGS...     any vitviz subcommand, e.g. `bench --quick`
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
cd "$ROOT"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
# Re-install only when the project's build configuration changed (fast when already set up).
STAMP="$VENV/.vitviz-installed"
SUM=$(cat pyproject.toml | cksum)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$SUM" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[test]"
    echo "$SUM" > "$STAMP"
fi
# CI only (CI=true, root, apt available): the desktop-file and AppStream validators the packaging
# tests run; they skip without them. Best effort: offline or a busy apt just means skipped tests.
# VITVIZ_NO_APT=1 turns this off.
ci_validators() {
    [ "${CI:-}" = true ] && [ "${VITVIZ_NO_APT:-}" != 1 ] && [ "$(id -u)" = 0 ] || return 0
    command -v apt-get >/dev/null 2>&1 || return 0
    missing=""
    command -v desktop-file-validate >/dev/null 2>&1 || missing="$missing desktop-file-utils"
    command -v appstreamcli >/dev/null 2>&1 || missing="$missing appstream"
    [ -n "$missing" ] || return 0
    echo "dev.sh: installing$missing for the packaging tests (CI)" >&2
    { timeout 120 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 300 \
        apt-get install -y -qq --no-install-recommends $missing; } >/dev/null 2>&1 \
        || echo "dev.sh: could not install$missing; those tests will skip" >&2
}
cmd="${1:-app}"
[ $# -gt 0 ] && shift
case "$cmd" in
    app) exec "$VENV/bin/python" -m vitviz "$@" ;;
    test) ci_validators; QT_QPA_PLATFORM=offscreen exec "$VENV/bin/python" -m pytest "$@" ;;
    cli) exec "$VENV/bin/python" -m vitviz "$@" ;;
    *) echo "usage: $0 app|test|cli [ARGS...]" >&2; exit 2 ;;
esac
