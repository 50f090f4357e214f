"""ulip2-pipeline: raw 3D objects to ULIP-2 tri-modal training data."""

__version__ = "0.1.0"
