"""edgerun: on-device inference runtime and benchmark harness (placeholder, filled in below)."""
__version__ = "0.1.0"
