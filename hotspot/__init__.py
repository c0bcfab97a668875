"""Command-line layer: wires the steps of features/, models/, training/ and serving/ together."""
__version__ = "0.1.0"
