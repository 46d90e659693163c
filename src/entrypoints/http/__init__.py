"""The Litestar HTTP API."""

from taskcore.entrypoints.http.app import create_app

__all__ = ["create_app"]
