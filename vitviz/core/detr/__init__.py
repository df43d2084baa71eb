"""The DETR family's view state, figures and box marks (capture: core.capture.detr_run; analysis:
core.analysis.detr)."""
