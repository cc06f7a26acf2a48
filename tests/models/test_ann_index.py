"""Behaviour of the in-process HNSW index of the vector memory (`models.ann_index`)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from models.ann_index import HnswConfig, HnswIndex
from neuraltrade.errors import ConfigError, DimensionMismatch, IndexFileError, InvalidItemId, InvalidVector
from neuraltrade.memory.collection import METRICS

DIMENSION = 64
COUNT = 5_000
# Uniformly random 64-d vectors are the hardest case for a graph index; ef 128 gives recall ~0.97 on them.
CONFIG = HnswConfig(m=16, ef_construction=200, ef_search=128, threads=2)
SMALL = HnswConfig(m=8, ef_construction=64, ef_search=32, threads=2)


def unit_vectors(count: int, seed: int, dimension: int = DIMENSION) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def brute_force_distances(metric: str, queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    queries, vectors = queries.astype(np.float64), vectors.astype(np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(queries, axis=1)[:, None] * np.linalg.norm(vectors, axis=1)[None, :]
        return 1.0 - (queries @ vectors.T) / norms
    if metric == "l2":
        squared = (queries**2).sum(axis=1)[:, None] + (vectors**2).sum(axis=1)[None, :] - 2.0 * queries @ vectors.T
        return np.sqrt(np.maximum(squared, 0.0))
    return 1.0 - queries @ vectors.T


@cache
def built(metric: str) -> tuple[HnswIndex, np.ndarray, np.ndarray]:
    """An index of COUNT unit vectors under ids 10, 20, ..., built once per metric for the whole module."""
    vectors = unit_vectors(COUNT, seed=1)
    ids = np.arange(COUNT, dtype=np.int64) * 10
    return HnswIndex.build(ids, vectors, metric=metric, config=CONFIG), ids, vectors


def small_index(count: int = 200, *, metric: str = "l2", capacity: int = 1024) -> tuple[HnswIndex, np.ndarray]:
    vectors = unit_vectors(count, seed=2, dimension=8)
    index = HnswIndex(dimension=8, metric=metric, config=SMALL, capacity=capacity)
    index.add(np.arange(count), vectors)
    return index, vectors


def test_every_metric_of_the_vector_memory_has_an_hnsw_space() -> None:
    assert all(HnswIndex(dimension=4, metric=metric, config=SMALL).metric == metric for metric in METRICS)


@pytest.mark.parametrize("metric", METRICS)
def test_top_10_recalls_at_least_95_percent_of_brute_force_with_its_distances(metric: str) -> None:
    index, ids, vectors = built(metric)
    queries = unit_vectors(100, seed=3)
    exact = brute_force_distances(metric, queries, vectors)
    truth = ids[np.argsort(exact, axis=1)[:, :10]]

    found, distances = index.search_many(queries, 10)

    assert found.shape == distances.shape == (100, 10)
    assert found.dtype == np.int64 and distances.dtype == np.float64
    recall = np.mean([len(set(row) & set(expected)) / 10 for row, expected in zip(found, truth, strict=True)])
    assert recall >= 0.95
    assert np.allclose(distances, np.take_along_axis(exact, found // 10, axis=1), rtol=1e-4)
    assert np.all(np.diff(distances, axis=1) >= 0)


@pytest.mark.parametrize("metric", METRICS)
def test_a_single_search_agrees_with_the_batch_search(metric: str) -> None:
    index, _, _ = built(metric)
    query = unit_vectors(1, seed=4)[0]

    ids, distances = index.search(query, 10)

    batch_ids, batch_distances = index.search_many(query[None, :], 10)
    assert ids.shape == (10,)
    assert np.array_equal(ids, batch_ids[0]) and np.allclose(distances, batch_distances[0])


def test_a_stored_vector_is_its_own_nearest_neighbour_at_distance_zero() -> None:
    index, ids, vectors = built("l2")

    found, distances = index.search(vectors[123], 1)

    assert found.tolist() == [ids[123]] and distances[0] == pytest.approx(0.0, abs=1e-3)


def test_removed_ids_are_never_returned_and_no_longer_counted() -> None:
    index, vectors = small_index(300)
    removed = list(range(0, 300, 3))

    assert index.remove([*removed, 10_000, 10_001]) == len(removed)

    assert len(index) == 200
    assert all(id not in index for id in removed) and 1 in index
    found, _ = index.search_many(vectors, 50)
    assert not set(found.ravel().tolist()) & set(removed)
    assert index.remove(removed) == 0


def test_adding_a_present_id_replaces_its_vector_and_keeps_one_copy() -> None:
    index, vectors = small_index(200)
    index.remove([7, 8, 9])  # free slots: hnswlib's slot reuse must not give id 5 a second, stale copy
    new = unit_vectors(1, seed=9, dimension=8)

    index.add(np.array([5]), new)

    assert len(index) == 197
    ids, distances = index.search(new[0], 1)
    assert ids.tolist() == [5] and distances[0] == pytest.approx(0.0, abs=1e-5)
    old_ids, old_distances = index.search(vectors[5], 197)
    assert old_ids.tolist().count(5) == 1
    assert old_distances[old_ids.tolist().index(5)] == pytest.approx(np.linalg.norm(vectors[5] - new[0]), rel=1e-4)


def test_a_removed_id_added_again_is_live_once_with_its_new_vector_and_slots_are_reused() -> None:
    index, _ = small_index(100, capacity=100)
    index.remove(range(50))
    new = unit_vectors(60, seed=10, dimension=8)

    index.add(np.arange(20, 80), new)  # 30 revived, 30 replaced in place

    assert len(index) == 80 and index.capacity == 100
    found, distances = index.search_many(new, 1)
    assert found[:, 0].tolist() == list(range(20, 80)) and np.allclose(distances, 0.0, atol=1e-3)
    everything, _ = index.search(new[0], 1_000)
    assert sorted(everything.tolist()) == list(range(20, 100))


def test_within_one_batch_the_last_vector_of_a_repeated_id_wins() -> None:
    index = HnswIndex(dimension=8, metric="cosine", config=SMALL)
    vectors = unit_vectors(3, seed=11, dimension=8)

    index.add(np.array([4, 4, 6]), vectors)

    assert len(index) == 2
    ids, distances = index.search(vectors[1], 1)
    assert ids.tolist() == [4] and distances[0] == pytest.approx(0.0, abs=1e-5)


def test_adding_grows_past_the_initial_capacity() -> None:
    index = HnswIndex(dimension=8, metric="inner_product", config=SMALL, capacity=10)
    vectors = unit_vectors(1_000, seed=12, dimension=8)

    for start in range(0, 1_000, 100):
        index.add(np.arange(start, start + 100), vectors[start : start + 100])

    assert len(index) == 1_000 and index.capacity >= 1_000
    found, _ = index.search_many(vectors[::97], 1)
    assert found[:, 0].tolist() == list(range(0, 1_000, 97))


@pytest.mark.parametrize("metric", METRICS)
def test_asking_for_more_neighbours_than_are_live_returns_them_all_sorted(metric: str) -> None:
    index, vectors = small_index(20, metric=metric)
    index.remove(range(5))

    ids, distances = index.search(vectors[10], 100, ef=1)

    assert sorted(ids.tolist()) == list(range(5, 20))
    assert np.all(np.diff(distances) >= 0)
    batch_ids, _ = index.search_many(vectors, 100)
    assert batch_ids.shape == (20, 15)


def test_an_empty_index_returns_no_neighbours() -> None:
    index = HnswIndex(dimension=8, metric="cosine", config=SMALL)

    ids, distances = index.search(np.ones(8, dtype=np.float32), 5)

    assert ids.shape == distances.shape == (0,) and len(index) == 0


def test_saving_and_loading_gives_the_same_answers_and_the_state(tmp_path: Path) -> None:
    index, vectors = small_index(500, metric="cosine")
    index.remove(range(0, 500, 5))
    path = tmp_path / "nested" / "folder" / "memory.hnsw"
    state = {"collection_version": 7, "fingerprint": "ab" * 32, "nested": {"list": [1, 2.5, None]}}

    index.save(path, state=state)
    loaded, loaded_state = HnswIndex.load(path)

    assert loaded_state == state
    assert (loaded.dimension, loaded.metric, loaded.config, len(loaded)) == (8, "cosine", SMALL, 400)
    assert 0 not in loaded and 1 in loaded
    expected, loaded_answers = index.search_many(vectors, 10), loaded.search_many(vectors, 10)
    assert np.array_equal(expected[0], loaded_answers[0]) and np.array_equal(expected[1], loaded_answers[1])
    assert sorted(file.name for file in path.parent.iterdir()) == ["memory.hnsw", "memory.hnsw.json"]


def test_a_loaded_index_accepts_additions_and_removals(tmp_path: Path) -> None:
    index, _ = small_index(100)
    index.remove(range(10))
    index.save(tmp_path / "index.bin", state={})
    loaded, _ = HnswIndex.load(tmp_path / "index.bin")
    new = unit_vectors(30, seed=13, dimension=8)

    loaded.add(np.arange(5, 35), new)
    assert loaded.remove([50, 51]) == 2

    assert len(loaded) == 93
    found, distances = loaded.search_many(new, 1)
    assert found[:, 0].tolist() == list(range(5, 35)) and np.allclose(distances, 0.0, atol=1e-3)


def test_saving_twice_replaces_the_files(tmp_path: Path) -> None:
    index, _ = small_index(50)
    path = tmp_path / "index.bin"
    index.save(path, state={"version": 1})
    index.remove([1])

    index.save(path, state={"version": 2})

    loaded, state = HnswIndex.load(path)
    assert state == {"version": 2} and len(loaded) == 49
    assert sorted(file.name for file in tmp_path.iterdir()) == ["index.bin", "index.bin.json"]


def saved(folder: Path, count: int = 100, seed: int = 2) -> Path:
    vectors = unit_vectors(count, seed=seed, dimension=8)
    index = HnswIndex(dimension=8, metric="l2", config=SMALL)
    index.add(np.arange(count), vectors)
    path = folder / "index.bin"
    index.save(path, state={"version": 1})
    return path


def assert_refused(path: Path, reason: str) -> None:
    with pytest.raises(IndexFileError, match=re.escape(str(path))) as raised:
        HnswIndex.load(path)
    assert re.search(reason, raised.value.reason)


def test_a_truncated_index_file_is_refused(tmp_path: Path) -> None:
    path = saved(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])

    assert_refused(path, "does not match")


def test_an_index_file_with_the_sidecar_of_another_index_is_refused(tmp_path: Path) -> None:
    path = saved(tmp_path / "one")
    other = saved(tmp_path / "two", seed=3)
    path.with_suffix(".bin.json").write_bytes(other.with_suffix(".bin.json").read_bytes())

    assert_refused(path, "does not match")


def test_a_missing_sidecar_or_index_file_is_refused(tmp_path: Path) -> None:
    path = saved(tmp_path)
    path.with_suffix(".bin.json").unlink()
    assert_refused(path, "index.bin.json is missing")
    assert_refused(tmp_path / "absent.bin", "absent.bin is missing")


@pytest.mark.parametrize(
    ("content", "reason"),
    [("{not json", "not valid JSON"), ("[1, 2]", "format"), ('{"format": 99}', "format is 99")],
)
def test_a_corrupt_sidecar_or_one_of_another_format_is_refused(tmp_path: Path, content: str, reason: str) -> None:
    path = saved(tmp_path)
    path.with_suffix(".bin.json").write_text(content, encoding="utf-8")

    assert_refused(path, reason)


def test_a_sidecar_with_an_edited_count_is_refused(tmp_path: Path) -> None:
    path = saved(tmp_path)
    sidecar = path.with_suffix(".bin.json")
    fields = json.loads(sidecar.read_text(encoding="utf-8"))
    sidecar.write_text(json.dumps({**fields, "live_count": 99}), encoding="utf-8")

    assert_refused(path, "sidecar says otherwise")


@pytest.mark.parametrize(
    ("change", "value"),
    [("m", 1), ("m", 0), ("ef_search", 0), ("threads", 0), ("ef_construction", -5), ("m", 2.5), ("threads", True)],
)
def test_a_configuration_out_of_range_is_refused_naming_the_value(change: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"{change} .*was {re.escape(repr(value))}"):
        replace(HnswConfig(), **{change: value})  # type: ignore[arg-type]  # wrong types on purpose


def test_a_configuration_has_a_stable_digest_that_changes_with_its_values() -> None:
    assert HnswConfig().digest == HnswConfig().digest
    assert HnswConfig(ef_search=65).digest != HnswConfig().digest
    assert re.fullmatch(r"[0-9a-f]{64}", HnswConfig().digest)


def test_an_unknown_metric_or_a_bad_dimension_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match="'dot'"):
        HnswIndex(dimension=8, metric="dot", config=SMALL)
    with pytest.raises(ConfigError, match="was 0"):
        HnswIndex(dimension=0, metric="l2", config=SMALL)


def test_vectors_of_another_dimension_are_refused_on_add_and_search() -> None:
    index, _ = small_index(10)

    with pytest.raises(DimensionMismatch, match="8-d vectors, was given 9-d"):
        index.add(np.array([1]), np.ones((1, 9), dtype=np.float32))
    with pytest.raises(DimensionMismatch, match="was given 7-d"):
        index.search(np.ones(7, dtype=np.float32), 3)
    with pytest.raises(DimensionMismatch):
        index.search_many(np.ones((2, 7), dtype=np.float32), 3)
    assert len(index) == 10


def test_bad_vectors_ids_and_k_are_refused_naming_the_value() -> None:
    index, _ = small_index(10)
    nan = np.ones((2, 8), dtype=np.float32)
    nan[1, 3] = np.nan

    with pytest.raises(InvalidVector, match="vector 1 of 2"):
        index.add(np.array([20, 21]), nan)
    with pytest.raises(InvalidItemId, match="-3"):
        index.add(np.array([-3]), np.ones((1, 8)))
    with pytest.raises(ConfigError, match="2 ids were given for 1 vectors"):
        index.add(np.array([1, 2]), np.ones((1, 8)))
    with pytest.raises(ConfigError, match="float"):
        index.add(np.array([1.5]), np.ones((1, 8)))
    with pytest.raises(ConfigError, match="k must be a positive integer, was 0"):
        index.search(np.ones(8), 0)
    with pytest.raises(InvalidVector, match=r"\(2, 8\)"):
        index.search(np.ones((2, 8)), 1)
    assert len(index) == 10


def test_a_graph_too_sparse_to_reach_every_live_vector_still_answers_with_live_ids_only() -> None:
    # A degree-2 graph thinned by deletions leaves live nodes unreachable; hnswlib alone raises then.
    vectors = np.random.default_rng(0).standard_normal((3_000, 16)).astype(np.float32)
    index = HnswIndex.build(np.arange(3_000), vectors, metric="l2", config=HnswConfig(m=2, ef_construction=4))
    index.remove(id for id in range(3_000) if id % 50)
    live = set(range(0, 3_000, 50))

    ids, distances = index.search(vectors[0], 60)
    batch_ids, batch_distances = index.search_many(vectors[:20], 60)

    assert 1 <= len(ids) <= 60 and set(ids.tolist()) <= live and np.all(np.diff(distances) >= 0)
    assert batch_ids.shape == (20, 60)
    found = batch_ids != -1
    assert set(batch_ids[found].tolist()) <= live and np.all(np.isinf(batch_distances[~found]))


# -- graphs over an exact subspace ---------------------------------------------------------------------


def low_rank_vectors(count: int, seed: int, *, rank: int = 24, dimension: int = DIMENSION * 2) -> np.ndarray:
    """Unit vectors spanning `rank` of `dimension` dimensions, as a linear embedder makes them."""
    mixing = np.random.default_rng(99).standard_normal((rank, dimension))
    vectors = (np.random.default_rng(seed).standard_normal((count, rank)) @ mixing).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.parametrize("metric", METRICS)
def test_a_graph_of_low_rank_vectors_searches_their_span_and_returns_exact_distances(metric: str) -> None:
    vectors = low_rank_vectors(2_000, seed=1)
    index = HnswIndex.build(np.arange(2_000), vectors, metric=metric, config=CONFIG)
    assert index.subspace is not None and (index.subspace.rank, index.subspace.rows) == (24, 32)
    assert index.dimension == DIMENSION * 2
    # Queries off the span, of any length: the distances are still the exact ones.
    queries = 3.0 * np.random.default_rng(2).standard_normal((20, DIMENSION * 2)).astype(np.float32)
    found, distances = index.search_many(queries, 10)
    truth = brute_force_distances(metric, queries, vectors)
    assert np.allclose(distances, np.take_along_axis(truth, found, axis=1), atol=1e-4)
    recall = np.mean([len(set(row) & set(np.argsort(t)[:10])) / 10 for row, t in zip(found, truth, strict=True)])
    assert recall >= 0.95
    ids, single = index.search(queries[0], 5)
    assert np.array_equal(ids, found[0, :5]) and np.allclose(single, distances[0, :5])


def test_a_vector_off_the_span_turns_the_graph_back_into_one_of_full_vectors_losing_nothing() -> None:
    vectors = low_rank_vectors(2_000, seed=3)
    index = HnswIndex.build(np.arange(2_000), vectors, metric="cosine", config=CONFIG)
    index.remove([5, 6])
    assert index.subspace is not None
    stray = unit_vectors(1, seed=4, dimension=DIMENSION * 2)
    index.add(np.array([10_000]), stray)
    assert index.subspace is None and len(index) == 1_999
    for label in (0, 1_999, 10_000):
        query = stray[0] if label == 10_000 else vectors[label]
        ids, distances = index.search(query, 1)
        assert ids.tolist() == [label] and distances[0] == pytest.approx(0.0, abs=1e-5)
    assert 5 not in index and 5 not in index.search_many(vectors[5:7], 10)[0]


def test_a_graph_over_a_subspace_is_saved_and_loaded_with_it(tmp_path: Path) -> None:
    vectors = low_rank_vectors(2_000, seed=5)
    index = HnswIndex.build(np.arange(2_000), vectors, metric="l2", config=CONFIG)
    index.save(tmp_path / "low.hnsw", state={})
    loaded, _ = HnswIndex.load(tmp_path / "low.hnsw")
    assert loaded.subspace is not None and np.array_equal(loaded.subspace.basis, index.subspace.basis)
    first, second = index.search_many(vectors[:20], 10), loaded.search_many(vectors[:20], 10)
    assert np.array_equal(first[0], second[0]) and np.allclose(first[1], second[1])


def test_a_graph_file_of_format_1_loads_as_one_of_full_vectors(tmp_path: Path) -> None:
    index, vectors = small_index()
    index.save(tmp_path / "old.hnsw", state={"version": 3})
    sidecar = tmp_path / "old.hnsw.json"
    described = json.loads(sidecar.read_text())
    described["format"] = 1
    del described["subspace"]
    sidecar.write_text(json.dumps(described))
    loaded, state = HnswIndex.load(tmp_path / "old.hnsw")
    assert loaded.subspace is None and state == {"version": 3}
    assert loaded.search(vectors[7], 1)[0].tolist() == [7]


def test_a_graph_over_a_subspace_emptied_by_removals_takes_a_vector_off_its_span() -> None:
    index = HnswIndex.build(np.arange(2_000), low_rank_vectors(2_000, seed=6), metric="l2", config=CONFIG)
    index.remove(range(2_000))
    stray = unit_vectors(1, seed=7, dimension=DIMENSION * 2)
    index.add(np.array([3]), stray)
    assert index.subspace is None and index.search(stray[0], 1)[0].tolist() == [3]


def test_a_save_killed_halfway_leaves_files_that_the_next_save_removes(tmp_path: Path) -> None:
    """A process killed during a save leaves its temporary graph file (as large as the graph) behind; the
    next save removes those of dead processes and leaves those of live ones, which may be saving now."""
    import os
    import subprocess
    import sys

    from models import ann_index

    index, _ = small_index(50)
    path = tmp_path / "index.bin"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = ann_index._HOST
    killed = [
        tmp_path / f".index.bin.{host}.{dead_pid}.{'a' * 32}.tmp",
        tmp_path / f".index.bin.json.{host}.{dead_pid}.b.tmp",
    ]
    running = tmp_path / f".index.bin.{host}.{os.getpid()}.{'c' * 32}.tmp"
    other_host = tmp_path / f".index.bin.elsewhere.{dead_pid}.{'d' * 32}.tmp"
    for leftover in [*killed, running, other_host]:
        leftover.write_bytes(b"partial graph")

    index.save(path, state={"version": 1})

    assert not any(leftover.exists() for leftover in killed)
    assert running.exists() and other_host.exists()
    assert HnswIndex.load(path)[1] == {"version": 1}
