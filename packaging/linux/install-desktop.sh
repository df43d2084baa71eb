#!/usr/bin/env sh
# Put vitviz in the desktop's application menu: the .desktop entry, the icons (hicolor theme) and the
# AppStream metainfo, for one user (default) or system-wide. The program itself must already be
# installed (pip install vitviz-*.whl, or the PyInstaller bundle).
#   packaging/linux/install-desktop.sh                      # into ~/.local/share, runs `vitviz` from PATH
#   packaging/linux/install-desktop.sh --exec /opt/vitviz/vitviz     # a bundle or venv not on PATH
#   sudo packaging/linux/install-desktop.sh --prefix /usr/local
#   packaging/linux/install-desktop.sh --uninstall [--prefix ...]
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ICONS="$HERE/../../resources/icons"
PREFIX="${XDG_DATA_HOME:-$HOME/.local/share}"
EXEC=""
UNINSTALL=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX="$2/share"; shift 2 ;;
        --exec) EXEC="$2"; shift 2 ;;
        --uninstall) UNINSTALL=1; shift ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done
SIZES="16 24 32 48 64 128 256 512"
METAINFO=io.github.vitviz.vitviz.metainfo.xml
if [ "$UNINSTALL" = 1 ]; then
    rm -f "$PREFIX/applications/vitviz.desktop" "$PREFIX/metainfo/$METAINFO" \
          "$PREFIX/icons/hicolor/scalable/apps/vitviz.svg"
    for s in $SIZES; do rm -f "$PREFIX/icons/hicolor/${s}x${s}/apps/vitviz.png"; done
else
    mkdir -p "$PREFIX/applications" "$PREFIX/metainfo" "$PREFIX/icons/hicolor/scalable/apps"
    if [ -n "$EXEC" ]; then
        case "$EXEC" in /*) ;; *) EXEC="$(pwd)/$EXEC" ;; esac
        # quote the path as the Desktop Entry spec asks (spaces and the like)
        sed -e "s|^Exec=vitviz |Exec=\"$EXEC\" |" -e "s|^TryExec=vitviz\$|TryExec=$EXEC|" \
            "$HERE/vitviz.desktop" > "$PREFIX/applications/vitviz.desktop"
    else
        cp "$HERE/vitviz.desktop" "$PREFIX/applications/vitviz.desktop"
    fi
    cp "$HERE/$METAINFO" "$PREFIX/metainfo/$METAINFO"
    cp "$ICONS/vitviz.svg" "$PREFIX/icons/hicolor/scalable/apps/vitviz.svg"
    for s in $SIZES; do
        mkdir -p "$PREFIX/icons/hicolor/${s}x${s}/apps"
        cp "$ICONS/vitviz-$s.png" "$PREFIX/icons/hicolor/${s}x${s}/apps/vitviz.png"
    done
fi
# Refresh the menus' caches where the tools exist; harmless to skip.
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$PREFIX/applications" || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$PREFIX/icons/hicolor" || true
echo "vitviz desktop entry $( [ "$UNINSTALL" = 1 ] && echo removed from || echo installed in ) $PREFIX"
