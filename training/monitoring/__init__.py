"""Watching a live model: drift in the incoming data (volume, offence mix, places, features) and decay in accuracy."""

PUBLISHED = "published"  # the model name of a publication's own forecast in its live scores
