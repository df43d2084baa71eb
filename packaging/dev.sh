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
# Re-install only when the project's dependency list changed (fast when already set up).
STAMP="$VENV/.vitviz-installed"
SUM=$(cat pyproject.toml | cksum)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$SUM" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[test]"
    echo "$SUM" > "$STAMP"
fi
cmd="${1:-app}"
[ $# -gt 0 ] && shift
case "$cmd" in
    app) exec "$VENV/bin/python" -m vitviz "$@" ;;
    test) QT_QPA_PLATFORM=offscreen exec "$VENV/bin/python" -m pytest "$@" ;;
    cli) exec "$VENV/bin/python" -m vitviz "$@" ;;
    *) echo "usage: $0 app|test|cli [ARGS...]" >&2; exit 2 ;;
esac
