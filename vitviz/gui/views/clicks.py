"""Turning a pyqtgraph scene click into a point in a view box's data coordinates."""
from __future__ import annotations

from PySide6 import QtCore


def left_click_point(vb, event, *, ignore_double: bool = False) -> QtCore.QPointF | None:
    """The data-coordinate point of a left click inside `vb`, or None for any other click."""
    if event.button() != QtCore.Qt.MouseButton.LeftButton or (ignore_double and event.double()):
        return None
    if not vb.sceneBoundingRect().contains(event.scenePos()):
        return None
    return vb.mapSceneToView(event.scenePos())
