"""The HTTP front: ASE JSON API (REST and WebSocket), Open Inference Protocol REST, OpenAPI."""

from aiges.server.http.front import HttpFront

__all__ = ["HttpFront"]
