"""vitviz desktop app (PySide6 + pyqtgraph). Depends on vitviz.core, never the reverse."""
