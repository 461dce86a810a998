"""The HTTP front: ASE JSON API (REST and WebSocket), Open Inference Protocol REST, OpenAPI."""

from aiges.server.http.app import HttpFront

__all__ = ["HttpFront"]
