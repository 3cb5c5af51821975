"""Real-time, interactive, long video generation with LongLive-family models."""

__version__ = "0.1.0"
