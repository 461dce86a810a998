"""aiges: serve a wrapper.py as an AIGes-compatible gRPC service."""

__version__ = "0.1.0"
