"""The version of nodeprune: its own module, so that low modules read it without importing
the package root."""

__version__ = "0.1.0"
