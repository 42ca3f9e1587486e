"""scalebridge: couple the scales of materials simulation end to end."""

__version__ = "0.1.0"
