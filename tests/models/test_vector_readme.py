"""The README's vector-memory example runs as written, so the README and the code cannot drift apart."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.engine import dispose_engines
from models.migrations import current_revision, head_revision

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## The vector memory"


def readme_example() -> str:
    """Return the first ```python block under the README's vector-memory heading (before the next heading)."""
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    section = re.split(r"^## ", text.split(SECTION, 1)[1], maxsplit=1, flags=re.MULTILINE)[0]
    found = re.search(r"^```python\n(.*?)^```$", section, flags=re.DOTALL | re.MULTILINE)
    assert found is not None, f"README.md's {SECTION!r} section has no ```python block"
    return found.group(1)


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


@pytest.mark.parametrize("runs", [1, 2], ids=["fresh-database", "run-again"])
def test_the_readme_example_runs_on_a_fresh_database_and_saves_its_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], runs: int
) -> None:
    database = tmp_path / "memory" / "readme.db"
    url = f"sqlite:///{database}"
    monkeypatch.setenv("NEURALTRADE_DB", url)
    monkeypatch.chdir(tmp_path)
    example = compile(readme_example(), str(README), "exec")

    for _ in range(runs):
        exec(example, {"__name__": "readme_example"})

    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == runs
    assert all(line.startswith("AAPL-2024-05-06 ") for line in printed)
    assert current_revision(url) == head_revision()
    # Leaving the `with` block closed the store, which saved the HNSW index beside the database.
    assert (database.parent / "readme.db.indexes" / "default.hnsw").is_file()
    assert not (tmp_path / "data").exists(), "the example wrote to the default database, not $NEURALTRADE_DB"
