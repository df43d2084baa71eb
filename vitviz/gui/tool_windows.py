"""The windows a main window opens beside itself (analyses, comparison): one of each per parent,
made on first use, then raised, showing the analysis it is given."""
from __future__ import annotations


def open_tool_window(parent, window_type, analysis=None):
    """The `window_type` window of `parent` (made once, then raised), showing `analysis` when given."""
    win = parent.findChild(window_type) if parent is not None else None
    if win is None:
        win = window_type(parent)
    if analysis is not None and analysis is not win.analysis:
        win.set_analysis(analysis)
    win.show()
    win.raise_()
    win.activateWindow()
    return win
