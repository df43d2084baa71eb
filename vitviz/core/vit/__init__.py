"""The ViT family's view state and figures (capture: core.capture.vit; analysis: core.analysis.vit)."""
