"""Every key and pointer gesture of the window, in one table: the menus bind their shortcuts from it
and Help > Keyboard shortcuts lists it, so the two cannot disagree."""
from __future__ import annotations

from dataclasses import dataclass

from PySide6 import QtGui, QtWidgets

SK = QtGui.QKeySequence.StandardKey


@dataclass(frozen=True)
class Key:
    name: str  # the action it binds ("" for gestures the views handle themselves)
    keys: object  # "Ctrl+E", a QKeySequence.StandardKey, or a gesture's words ("Shift+click")
    text: str
    group: str


KEYS = (
    Key("open", SK.Open, "Open image files", "Images"),
    Key("open_folder", "Ctrl+Shift+O", "Open a folder of images", "Images"),
    Key("paste", SK.Paste, "Paste an image", "Images"),
    Key("next_image", "Alt+Right", "Next image in the list (skips files that failed)", "Images"),
    Key("previous_image", "Alt+Left", "Previous image in the list", "Images"),
    Key("", "Drop files or a folder", "Open them as the image list", "Images"),
    Key("next_layer", "PgDown", "Next layer (Swin: block)", "View"),
    Key("previous_layer", "PgUp", "Previous layer", "View"),
    Key("next_head", "]", "Next head (then the fused heads)", "View"),
    Key("previous_head", "[", "Previous head", "View"),
    Key("toggle_cls", "C", "Query the class token / the clicked patch", "View"),
    Key("toggle_direction", "D", "Attention from the query / to the query", "View"),
    Key("toggle_grid", "G", "Show or hide the token grid", "View"),
    Key("toggle_side", "Ctrl+B", "Hide or show the side column (more room for the views)", "View"),
    Key("model_view", "M", "Show what the model sees (its resized, cropped input)", "View"),
    Key("analyses", "Ctrl+Shift+A", "Analyses: attention distance and entropy per head, position "
        "embeddings, DINO masks, token norms", "View"),
    Key("compare", "Ctrl+Shift+M", "Compare methods: maps side by side, deletion / insertion curves, "
        "sanity check", "View"),
    Key("walkthrough", "W", "Explain this attention step by step (q, k, scores, softmax, output)", "View"),
    Key("fit_view", "F", "Fit the views to the image (undo zoom and pan)", "View"),
    Key("", "Mouse wheel / drag", "Zoom / pan (the views are linked)", "View"),
    Key("", "Double-click beside the image", "Fit the view", "View"),
    Key("export", "Ctrl+E", "Export the view (PNG, SVG, PDF)", "Export"),
    Key("copy", SK.Copy, "Copy the view as an image", "Export"),
    Key("shortcuts", SK.HelpContents, "This list", "Help"),
    Key("quit", "Ctrl+Q", "Quit", "Help"),  # StandardKey.Quit is empty off macOS/GNOME
    Key("", "Click a patch", "Query it: the attention of that token", "ViT"),
    Key("", "Arrow keys", "Move the query by one patch", "ViT"),
    Key("", "Click a tile", "Show that layer and head", "ViT"),
    Key("", "Click a class (top 5)", "Explain that class (gradient methods)", "ViT"),
    Key("", "Click a token", "Query it; its window is outlined", "Swin"),
    Key("", "Arrow keys", "Move the query by one token", "Swin"),
    Key("", "Click a box", "Select that detection: its attention", "DETR"),
    Key("", "Shift+click", "Probe the encoder at that point", "DETR"),
    Key("", "Click a matrix cell", "Select that object query", "DETR"),
)
GROUPS = ("Images", "View", "Export", "Help", "ViT", "Swin", "DETR")


def key_of(name: str):
    """The shortcut the action `name` is bound to (a string or a StandardKey)."""
    for k in KEYS:
        if k.name == name:
            return k.keys
    raise KeyError(f"no key named {name!r} in the shortcuts table")


def key_text(keys) -> str:
    """How the key reads on this platform ("Ctrl+O", "⌘O"); gestures as written."""
    if isinstance(keys, SK):
        return QtGui.QKeySequence(keys).toString(QtGui.QKeySequence.SequenceFormat.NativeText)
    return str(keys)


class ShortcutsDialog(QtWidgets.QDialog):
    """Help > Keyboard shortcuts: the table, grouped, in a resizable window."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setHeaderLabels(["Key or gesture", "What it does"])
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        for group in GROUPS:
            head = QtWidgets.QTreeWidgetItem([group, ""])
            font = head.font(0)
            font.setBold(True)
            head.setFont(0, font)
            head.setFirstColumnSpanned(True)
            self.tree.addTopLevelItem(head)
            for k in (k for k in KEYS if k.group == group):
                row = QtWidgets.QTreeWidgetItem([key_text(k.keys), k.text])
                row.setToolTip(1, k.text)
                head.addChild(row)
            head.setExpanded(True)
        self.tree.resizeColumnToContents(0)
        self.tree.resizeColumnToContents(1)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(self.tree)
        lay.addWidget(buttons)
        # wide enough for every description (no "..."), within the screen
        want = self.tree.columnWidth(0) + self.tree.columnWidth(1) + 60
        screen = self.screen().availableGeometry() if self.screen() else None
        self.resize(min(want, int(screen.width() * 0.9)) if screen else want, 640)

    def rows(self) -> list[tuple[str, str, str]]:
        """(group, key, text) of every row, as shown."""
        out = []
        for i in range(self.tree.topLevelItemCount()):
            head = self.tree.topLevelItem(i)
            out += [(head.text(0), head.child(j).text(0), head.child(j).text(1)) for j in range(head.childCount())]
        return out

