"""Routing traces for moesim: a writer of the v1 format, and importers from serving engines."""
from .trace import TraceBuilder, TraceError

__all__ = ["TraceBuilder", "TraceError"]
