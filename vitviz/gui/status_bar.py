"""A status bar whose messages elide to the room they have (full text in the tooltip) and never run
into the permanent model/weights/device label on the right."""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets


class ElidedLabel(QtWidgets.QLabel):
    """One line that ends in "…" when it does not fit; the whole text is its tooltip."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(40)

    def set_full_text(self, text: str) -> None:
        self._full = text
        self.setToolTip(text if text else "")
        self._elide()

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        line = " ".join(self._full.split())  # one line: a traceback's first lines read as one
        self.setText(self.fontMetrics().elidedText(line, QtCore.Qt.TextElideMode.ElideRight, max(0, self.width())))


class StatusBar(QtWidgets.QStatusBar):
    """showMessage / currentMessage / clearMessage as QStatusBar's, drawn in an ElidedLabel.

    Qt paints a temporary message itself, unclipped by our text rules; here the message is a normal
    stretch widget left of the permanent ones, so the layout gives the permanent label its width."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.message_label = ElidedLabel()
        self.addWidget(self.message_label, 1)
        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.clearMessage)

    def showMessage(self, text: str, timeout: int = 0) -> None:  # noqa: N802 (Qt's name)
        self.message_label.set_full_text(text)
        self._timer.stop()
        if timeout > 0:
            self._timer.start(timeout)
        self.messageChanged.emit(text)

    def currentMessage(self) -> str:  # noqa: N802
        return self.message_label.full_text()

    def clearMessage(self) -> None:  # noqa: N802
        self.showMessage("")

    def addPermanentWidget(self, widget: QtWidgets.QWidget, stretch: int = 0) -> None:  # noqa: N802
        """A permanent widget keeps the width its text needs (labels grow with their text)."""
        widget.setSizePolicy(QtWidgets.QSizePolicy.Policy.Minimum, QtWidgets.QSizePolicy.Policy.Preferred)
        super().addPermanentWidget(widget, stretch)
