"""vitviz core: images, token geometry, models, attention capture and analysis. No Qt here."""
