"""The package version, in the bottom layer so every layer can record it without importing the rest."""

__version__ = "0.3.0"
