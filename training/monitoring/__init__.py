"""Watching a live model: drift in the incoming data (volume, offence mix, places, features) and decay in accuracy."""
