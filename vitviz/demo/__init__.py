"""Offline demo data: procedural scenes for training the bundled small models."""
