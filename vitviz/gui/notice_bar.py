"""The one-line notice above the views (random weights, notes from loading): what runs and why in a
line, the details in its tooltip, and at most one action button."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets


class NoticeBar(QtWidgets.QFrame):
    actionClicked = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("notice")
        self.setStyleSheet("#notice { background:#fff3cd; } QLabel { color:#664d03; font-weight:bold; }")
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(8, 3, 8, 3)
        self.label = QtWidgets.QLabel()
        # one line however long the text: the full text and the details are in the tooltip
        self.label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.button = QtWidgets.QPushButton()
        self.button.clicked.connect(self.actionClicked)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.button)
        self._text = ""
        self.setVisible(False)

    def show_notice(self, text: str, details: list[str] = (), action: str | None = None) -> None:
        """Show `text` (one line); `details` (e.g. the loader's notes) as the tooltip; `action` the
        button's text, or None for no button."""
        self._text = text
        self.label.setToolTip("\n\n".join([text, *[d for d in details if d != text]]))
        self.button.setText(action or "")
        self.button.setVisible(action is not None)
        self.button.setEnabled(True)
        self.setVisible(bool(text))
        self._elide()

    def clear(self) -> None:
        self.show_notice("")

    def text(self) -> str:
        return self._text

    def details(self) -> str:
        return self.label.toolTip()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(40, self.label.width())
        self.label.setText(self.label.fontMetrics().elidedText(self._text, QtCore.Qt.TextElideMode.ElideRight, width))
