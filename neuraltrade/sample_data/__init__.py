"""Real daily bars shipped with the package (public Yahoo Finance data: NVDA, ORCL, YHOO).

They make the demo and the default nightly run work with nothing outside the installed package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample_paths() -> list[Path]:
    """Return the paths of the shipped sample files, sorted by name."""
    folder = resources.files(__name__)
    return sorted(Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".csv"))
