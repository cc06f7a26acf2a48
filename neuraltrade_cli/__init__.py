"""The `neuraltrade` command line (it imports flows, so it lives outside the pure `neuraltrade` package)."""

from neuraltrade_cli import ingestion, learning, pipeline, research, trading  # noqa: F401  (they register their commands)
from neuraltrade_cli.app import app, main

__all__ = ["app", "main"]
