"""The bundled real sample (data/toronto_sample, provenance in data/README.md), installed as package data."""
