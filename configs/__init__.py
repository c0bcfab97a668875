"""Bundled study configs, installed as package data (hotspot.configs): the sample demo and full Toronto."""
