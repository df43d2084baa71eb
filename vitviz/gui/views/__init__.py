"""The views of the vitviz app: pyqtgraph widgets and the family panels."""
