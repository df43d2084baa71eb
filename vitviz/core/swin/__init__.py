"""The Swin family's view state, figures and window marks (capture: core.capture.swin; analysis:
core.analysis.swin). No Qt here: the GUI panel and the headless export both build from these."""
