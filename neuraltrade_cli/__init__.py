"""The `neuraltrade` command line (it imports flows, so it lives outside the pure `neuraltrade` package)."""

from neuraltrade_cli import (  # noqa: F401  (they register their commands)
    backups,
    ingestion,
    learning,
    pipeline,
    provenance,
    research,
    trading,
)
from neuraltrade_cli.app import app, main

__all__ = ["app", "main"]
