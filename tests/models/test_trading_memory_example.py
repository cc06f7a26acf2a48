"""docs/vector_memory.md's `TradingMemory` example runs as written against a real database, and does what it says."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.engine import dispose_engines
from models.vector_store import VectorDB
from neuraltrade.memory.collection import Filter, Query
from neuraltrade.types import Observation

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "vector_memory.md"
K = 5


def guide_example() -> str:
    """Return every ```python block of the guide, in order, as one program."""
    text = GUIDE.read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)
    assert blocks, f"{GUIDE.name} has no ```python block"
    return "\n".join(blocks)


def run_example(runs: int = 1) -> dict[str, Any]:
    """Execute the guide's example `runs` times (in the current directory and $NEURALTRADE_DB); the last namespace."""
    example = compile(guide_example(), str(GUIDE), "exec")
    namespace: dict[str, Any] = {}
    for _ in range(runs):
        namespace = {"__name__": "vector_memory_example"}
        exec(example, namespace)
    return namespace


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'memory.db'}"
    monkeypatch.setenv("NEURALTRADE_DB", url)
    monkeypatch.chdir(tmp_path)
    yield url
    assert not (tmp_path / "data").exists(), "the example wrote to the default database, not $NEURALTRADE_DB"
    dispose_engines()


def brute_force(
    embeddings: dict[uuid.UUID, np.ndarray], query: Observation, candidates: list[Observation], k: int
) -> list[tuple[str, float]]:
    """The ids and cosine distances of the `k` nearest of `candidates` of the query's symbol before it, by numpy."""
    earlier = [state for state in candidates if state.symbol == query.symbol and state.timestamp < query.timestamp]
    if not earlier:
        return []
    matrix = np.stack([embeddings[state.id] for state in earlier]).astype(np.float64)
    vector = embeddings[query.id].astype(np.float64)
    distances = 1.0 - matrix @ vector / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(vector))
    order = np.argsort(distances, kind="stable")[:k]
    return [(str(earlier[i].id), float(distances[i])) for i in order]


def check_recall(
    similar: list[tuple[Observation, float]], query: Observation, stored: dict[uuid.UUID, Observation], k: int
) -> None:
    assert len(similar) <= k
    for state, _ in similar:
        assert isinstance(state, Observation)
        assert state == stored[state.id], "the rebuilt observation differs from the one remembered"
        assert state.symbol == query.symbol
        assert state.timestamp < query.timestamp, "the memory returned a state at or after the query's time"
    distances = [distance for _, distance in similar]
    assert distances == sorted(distances), "results are not nearest first"


def test_the_example_recalls_earlier_states_of_the_same_symbol_nearest_first(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace = run_example()
    observations: list[Observation] = namespace["observations"]
    today: Observation = namespace["today"]
    similar: list[tuple[Observation, float]] = namespace["similar"]
    stored = {state.id: state for state in observations}

    assert {state.symbol for state in observations} == {"NVDA", "ORCL"}
    assert len(similar) == K
    check_recall(similar, today, stored, K)
    expected = brute_force(namespace["embeddings"], today, observations, K)
    assert [str(state.id) for state, _ in similar] == [key for key, _ in expected]
    assert [distance for _, distance in similar] == pytest.approx([distance for _, distance in expected], abs=1e-5)
    # What the example stored is in the database, not only in its process: a new store sees every state.
    store = VectorDB.open("trading_memory", database_url=database)
    try:
        assert store.count() == len(observations)
    finally:
        store.close()

    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("NVDA on 2014-10-21")
    assert len(printed) == 1 + K


def test_the_memory_never_recalls_another_symbol_or_the_future(database: str) -> None:
    namespace = run_example()
    observations: list[Observation] = namespace["observations"]
    embeddings: dict[uuid.UUID, np.ndarray] = namespace["embeddings"]
    stored = {state.id: state for state in observations}
    memory = namespace["TradingMemory"](namespace["embedder"])
    unguarded: set[str] = set()
    try:
        for symbol in ("NVDA", "ORCL"):
            states = sorted((state for state in observations if state.symbol == symbol), key=lambda s: s.timestamp)
            # The first state has no past; the second one state of it; then some across the year, the last included.
            assert memory.find_similar(states[0], k=K) == []
            assert [state for state, _ in memory.find_similar(states[1], k=K)] == [states[0]]
            for query in [*states[7::60], states[-1]]:
                similar = memory.find_similar(query, k=K)
                assert len(similar) == K
                check_recall(similar, query, stored, K)
                expected = brute_force(embeddings, query, observations, K)
                assert [str(state.id) for state, _ in similar] == [key for key, _ in expected]
                assert [distance for _, distance in similar] == pytest.approx([d for _, d in expected], abs=1e-5)
                # A given embedding is the query; the observation only names the symbol and the moment.
                assert memory.find_similar(query, k=K, embedding=embeddings[query.id]) == similar
                # Without its filter and `as_of`, the same search does reach other symbols and the future.
                for found in memory.db.search(Query(embeddings[query.id], k=K)):
                    if found.metadata["symbol"] != query.symbol:
                        unguarded.add("another symbol")
                    if found.timestamp >= query.timestamp:
                        unguarded.add("the query's time or later")
    finally:
        memory.close()
    assert unguarded == {"another symbol", "the query's time or later"}


def test_remembering_the_same_states_again_stores_no_duplicate(database: str) -> None:
    # The example itself remembers one state twice (and asserts the count); run it twice over one database.
    namespace = run_example(runs=2)
    observations: list[Observation] = namespace["observations"]
    embeddings: dict[uuid.UUID, np.ndarray] = namespace["embeddings"]
    today: Observation = namespace["today"]
    memory = namespace["TradingMemory"](namespace["embedder"])
    try:
        for _ in range(2):
            memory.remember(today, embeddings[today.id])
        assert memory.db.count() == len(observations) == len({state.id for state in observations})
        for symbol in ("NVDA", "ORCL"):
            expected = sum(state.symbol == symbol for state in observations)
            assert memory.db.count(Filter.eq("symbol", symbol)) == expected
        again = memory.find_similar(today, k=K)
        assert again == namespace["similar"]
        assert len({state.id for state, _ in again}) == K
    finally:
        memory.close()
