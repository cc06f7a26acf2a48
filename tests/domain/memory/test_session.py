"""Behaviour of the vector memory's first-level cache (`neuraltrade.memory.session`).

Time is a `FakeClock` moved by hand in steps that floats represent exactly, so the expiry boundary is exact.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Hashable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.memory.session import CacheStatistics, SessionMemory, SessionMemoryConfig


class FakeClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_memory(clock: FakeClock, *, max_items: int = 100, max_results: int = 100, ttl: float = 60.0) -> SessionMemory:
    config = SessionMemoryConfig(max_items=max_items, max_results=max_results, ttl_seconds=ttl)
    return SessionMemory(config, clock=clock)


# Round trips and misses


def test_a_stored_item_and_a_stored_result_are_read_back() -> None:
    memory = make_memory(FakeClock())
    memory.put_item("bars", "id-1", {"close": 1.5})
    memory.put_results("bars", (b"query", 10, None), ["id-1", "id-2"])
    assert memory.get_item("bars", "id-1") == {"close": 1.5}
    assert memory.get_results("bars", (b"query", 10, None)) == ["id-1", "id-2"]
    assert memory.statistics == CacheStatistics(
        hits=2, misses=0, evictions=0, expirations=0, invalidations=0, items=1, results=1
    )


def test_items_results_and_collections_do_not_share_keys() -> None:
    memory = make_memory(FakeClock())
    memory.put_item("bars", "same", "item")
    memory.put_results("bars", "same", "result")
    assert memory.get_item("other", "same") is None
    assert memory.get_results("other", "same") is None
    assert memory.get_item("bars", "same") == "item"
    assert memory.get_results("bars", "same") == "result"


def test_an_unknown_key_is_a_miss() -> None:
    memory = make_memory(FakeClock())
    assert memory.get_item("bars", "absent") is None
    assert memory.get_results("bars", ("absent", 5)) is None
    assert (memory.statistics.hits, memory.statistics.misses) == (0, 2)


def test_storing_none_is_refused_because_none_means_a_miss() -> None:
    memory = make_memory(FakeClock())
    with pytest.raises(ValidationError, match="None"):
        memory.put_item("bars", "id-1", None)
    with pytest.raises(ValidationError, match="None"):
        memory.put_results("bars", "query", None)


def test_the_default_memory_uses_the_real_clock_and_default_bounds() -> None:
    memory = SessionMemory()
    memory.put_results("bars", "query", [1])
    assert memory.get_results("bars", "query") == [1]
    assert memory.config == SessionMemoryConfig(max_items=10_000, max_results=10_000, ttl_seconds=300.0)


# Least recently used eviction


def test_the_least_recently_used_item_is_evicted_and_a_get_refreshes_recency() -> None:
    memory = make_memory(FakeClock(), max_items=3)
    for item_id in ("a", "b", "c"):
        memory.put_item("bars", item_id, item_id.upper())
    assert memory.get_item("bars", "a") == "A"  # now b is the least recently used
    memory.put_item("bars", "d", "D")
    assert memory.statistics.evictions == 1
    assert memory.get_item("bars", "b") is None
    assert [memory.get_item("bars", item_id) for item_id in ("a", "c", "d")] == ["A", "C", "D"]
    assert memory.statistics.items == 3


def test_the_results_bound_is_shared_by_all_collections() -> None:
    memory = make_memory(FakeClock(), max_results=2)
    memory.put_results("first", 1, "one")
    memory.put_results("second", 2, "two")
    assert memory.get_results("first", 1) == "one"  # now the second collection's result is the oldest
    memory.put_results("third", 3, "three")
    assert memory.get_results("second", 2) is None
    assert memory.get_results("first", 1) == "one"
    assert memory.get_results("third", 3) == "three"
    assert (memory.statistics.evictions, memory.statistics.results) == (1, 2)


def test_storing_an_existing_key_again_replaces_it_without_evicting() -> None:
    memory = make_memory(FakeClock(), max_results=2)
    memory.put_results("bars", 1, "old")
    memory.put_results("bars", 2, "two")
    memory.put_results("bars", 1, "new")  # refreshes 1, so 2 is now the oldest
    memory.put_results("bars", 3, "three")
    assert memory.get_results("bars", 1) == "new"
    assert memory.get_results("bars", 2) is None
    assert memory.statistics.evictions == 1


# Time to live


def test_an_entry_expires_at_exactly_its_time_to_live() -> None:
    clock = FakeClock()
    memory = make_memory(clock, ttl=10.0)
    memory.put_item("bars", "id-1", "item")
    memory.put_results("bars", "query", "result")
    clock.advance(9.5)
    assert memory.get_item("bars", "id-1") == "item"
    clock.advance(0.5)  # age == ttl: expired
    assert memory.get_item("bars", "id-1") is None
    assert memory.get_results("bars", "query") is None
    statistics = memory.statistics
    assert (statistics.hits, statistics.misses, statistics.expirations) == (1, 2, 2)
    assert (statistics.items, statistics.results) == (0, 0)  # expired entries found by a get are removed


def test_reading_refreshes_recency_but_not_age_while_storing_again_restarts_it() -> None:
    clock = FakeClock()
    memory = make_memory(clock, ttl=10.0)
    memory.put_results("bars", "read", "r")
    memory.put_results("bars", "rewritten", "w")
    clock.advance(9.0)
    assert memory.get_results("bars", "read") == "r"
    memory.put_results("bars", "rewritten", "w2")
    clock.advance(1.0)
    assert memory.get_results("bars", "read") is None
    assert memory.get_results("bars", "rewritten") == "w2"


# Invalidation


def test_invalidating_a_collection_drops_its_results_and_items_but_not_another_collections() -> None:
    memory = make_memory(FakeClock())
    for collection in ("written", "untouched"):
        memory.put_item(collection, "id-1", "item")
        memory.put_item(collection, "id-2", "item")
        memory.put_results(collection, "query", "result")
    memory.invalidate("written")
    assert memory.get_item("written", "id-1") is None
    assert memory.get_item("written", "id-2") is None
    assert memory.get_results("written", "query") is None
    assert memory.get_item("untouched", "id-1") == "item"
    assert memory.get_item("untouched", "id-2") == "item"
    assert memory.get_results("untouched", "query") == "result"
    assert memory.statistics.invalidations == 3


def test_invalidating_named_items_drops_only_them_and_every_result_of_the_collection() -> None:
    memory = make_memory(FakeClock())
    for item_id in ("id-1", "id-2", "id-3"):
        memory.put_item("bars", item_id, item_id)
    memory.put_results("bars", "first query", "a")
    memory.put_results("bars", "second query", "b")
    memory.put_results("other", "first query", "c")
    memory.invalidate("bars", ["id-1", "id-3", "never-cached"])
    assert memory.get_item("bars", "id-1") is None
    assert memory.get_item("bars", "id-2") == "id-2"
    assert memory.get_item("bars", "id-3") is None
    assert memory.get_results("bars", "first query") is None
    assert memory.get_results("bars", "second query") is None
    assert memory.get_results("other", "first query") == "c"
    assert memory.statistics.invalidations == 4  # two items and two results that were held


def test_invalidating_with_a_single_string_is_refused() -> None:
    memory = make_memory(FakeClock())
    with pytest.raises(ValidationError, match="'id-1'"):
        memory.invalidate("bars", "id-1")


def test_clear_drops_everything_and_keeps_the_counters() -> None:
    memory = make_memory(FakeClock())
    memory.put_item("bars", "id-1", "item")
    memory.put_results("bars", "query", "result")
    assert memory.get_item("bars", "id-1") == "item"
    memory.clear()
    assert memory.get_item("bars", "id-1") is None
    assert memory.statistics == CacheStatistics(
        hits=1, misses=1, evictions=0, expirations=0, invalidations=0, items=0, results=0
    )


# Statistics


def test_hit_rate_is_hits_per_lookup_and_zero_when_nothing_was_asked() -> None:
    assert CacheStatistics(0, 0, 0, 0, 0, 0, 0).hit_rate == 0.0
    assert CacheStatistics(3, 1, 0, 0, 0, 0, 0).hit_rate == 0.75
    assert CacheStatistics(0, 4, 0, 0, 0, 0, 0).hit_rate == 0.0
    memory = make_memory(FakeClock())
    assert memory.statistics.hit_rate == 0.0
    memory.put_item("bars", "id-1", "item")
    for item_id in ("id-1", "id-1", "absent", "id-1"):
        memory.get_item("bars", item_id)
    assert memory.statistics.hit_rate == 0.75


def test_resetting_the_statistics_zeroes_the_counters_and_keeps_the_entries() -> None:
    memory = make_memory(FakeClock(), max_items=1)
    memory.put_item("bars", "id-1", "item")
    memory.put_item("bars", "id-2", "item")
    memory.get_item("bars", "id-1")
    memory.reset_statistics()
    assert memory.statistics == CacheStatistics(
        hits=0, misses=0, evictions=0, expirations=0, invalidations=0, items=1, results=0
    )
    assert memory.get_item("bars", "id-2") == "item"


def test_statistics_since_an_earlier_reading_count_only_what_came_after_it() -> None:
    memory = make_memory(FakeClock(), max_results=1)
    memory.put_results("bars", "a", 1)
    memory.get_results("bars", "a")
    memory.get_results("bars", "absent")
    before = memory.statistics
    memory.get_results("bars", "a")
    memory.get_results("bars", "a")
    memory.get_results("bars", "absent")
    memory.put_results("bars", "b", 2)  # evicts "a"
    memory.put_item("bars", "id-1", "item")
    since = memory.statistics.since(before)
    assert since == CacheStatistics(hits=2, misses=1, evictions=1, expirations=0, invalidations=0, items=1, results=1)
    assert since.entries == 2
    assert since.figures() == {
        "hits": 2,
        "misses": 1,
        "hit_rate": 2 / 3,
        "entries": 2,
        "evictions": 1,
        "expirations": 0,
        "invalidations": 0,
    }


# Loading through the cache


def test_get_or_load_loads_on_a_miss_and_answers_the_same_key_from_the_cache() -> None:
    memory = make_memory(FakeClock())
    loads: list[str] = []

    def load(name: str) -> Any:
        def loaded() -> list[str]:
            loads.append(name)
            return [name]

        return loaded

    first = memory.get_or_load("market_state", ("db", "NVDA", 7), load("NVDA@7"))
    again = memory.get_or_load("market_state", ("db", "NVDA", 7), load("NVDA@7 again"))
    newer = memory.get_or_load("market_state", ("db", "NVDA", 8), load("NVDA@8"))
    assert again is first and newer == ["NVDA@8"]
    assert loads == ["NVDA@7", "NVDA@8"]
    assert (memory.statistics.hits, memory.statistics.misses, memory.statistics.results) == (1, 2, 2)
    # What it loaded is an ordinary cached result.
    assert memory.get_results("market_state", ("db", "NVDA", 7)) is first


def test_get_or_load_caches_nothing_when_the_load_fails_or_returns_none() -> None:
    memory = make_memory(FakeClock())

    def fail() -> Any:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        memory.get_or_load("market_state", "key", fail)
    with pytest.raises(ValidationError, match="None"):
        memory.get_or_load("market_state", "key", lambda: None)
    assert memory.get_or_load("market_state", "key", lambda: "loaded") == "loaded"
    assert (memory.statistics.hits, memory.statistics.misses, memory.statistics.results) == (0, 3, 1)


def test_threads_asking_for_the_same_key_at_once_load_it_once_and_the_others_hit() -> None:
    memory = make_memory(FakeClock())
    started, release = threading.Event(), threading.Event()
    loads: list[int] = []
    answers: list[Any] = []

    def slow_load() -> list[int]:
        started.set()
        assert release.wait(10)
        loads.append(1)
        return [len(loads)]

    def ask() -> None:
        answers.append(memory.get_or_load("reflections", ("db", "strategy", 3), slow_load))

    first = threading.Thread(target=ask)
    first.start()
    assert started.wait(10)
    others = [threading.Thread(target=ask) for _ in range(3)]
    for thread in others:
        thread.start()
    # Another key is not held up by the load in progress.
    assert memory.get_or_load("reflections", ("db", "other", 3), lambda: "other") == "other"
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert loads == [1] and len(answers) == 4 and all(answer is answers[0] for answer in answers)
    assert (memory.statistics.hits, memory.statistics.misses) == (3, 2)
    assert memory._loading == {}  # no lock is kept for a key nobody is asking for


# Configuration


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_items", 0),
        ("max_items", -5),
        ("max_items", 2.5),
        ("max_items", True),
        ("max_results", 0),
        ("ttl_seconds", 0.0),
        ("ttl_seconds", -1.0),
        ("ttl_seconds", math.nan),
        ("ttl_seconds", math.inf),
        ("ttl_seconds", "60"),
    ],
)
def test_a_bad_configuration_is_refused_naming_the_value(name: str, value: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        SessionMemoryConfig(**{name: value})
    assert name in str(raised.value)
    assert f"was {value!r}" in str(raised.value)


# Workloads


def test_replaying_strategies_over_a_rolling_window_of_recent_states_mostly_hits() -> None:
    clock = FakeClock()
    memory = make_memory(clock, max_results=1_000, ttl=300.0)
    strategies, steps, window = 5, 500, 50
    for step in range(steps):
        for strategy in range(strategies):
            for state in range(max(0, step - window + 1), step + 1):
                key = (f"strategy-{strategy}", state)
                if memory.get_results("market_states", key) is None:
                    memory.put_results("market_states", key, [state])
        clock.advance(1.0)
    statistics = memory.statistics
    # Only each strategy's first look at a new state misses: 500 misses in 23,775 lookups per strategy.
    lookups_per_strategy = window * (window + 1) // 2 + (steps - window) * window
    assert statistics.misses == strategies * steps
    assert statistics.hit_rate == pytest.approx(1 - steps / lookups_per_strategy)
    assert statistics.hit_rate >= 0.97
    assert (statistics.evictions, statistics.expirations) == (1_500, 0)


def test_threads_sharing_a_memory_lose_no_counts() -> None:
    memory = make_memory(FakeClock(), max_items=50, max_results=50)
    lookups_per_thread = 2_000

    def work(thread: int) -> None:
        for step in range(lookups_per_thread):
            key = (thread, step % 70)
            if memory.get_results("bars", key) is None:
                memory.put_results("bars", key, step)
            if step % 97 == 0:
                memory.invalidate("bars", [str(step)])

    threads = [threading.Thread(target=work, args=(thread,)) for thread in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statistics = memory.statistics
    assert statistics.hits + statistics.misses == 4 * lookups_per_thread
    assert statistics.results <= 50


# Agreement with a reference model


class ReferenceRegion:
    """The obvious LRU: a dict of (stored at, value) and a list of keys, least recently used first."""

    def __init__(self, capacity: int, ttl: float) -> None:
        self.capacity, self.ttl = capacity, ttl
        self.entries: dict[tuple[str, Hashable], tuple[float, Any]] = {}
        self.order: list[tuple[str, Hashable]] = []
        self.counts = {"hits": 0, "misses": 0, "evictions": 0, "expirations": 0, "invalidations": 0}

    def get(self, key: tuple[str, Hashable], now: float) -> Any:
        if key not in self.entries:
            self.counts["misses"] += 1
            return None
        stored_at, value = self.entries[key]
        self.order.remove(key)
        if now - stored_at >= self.ttl:
            del self.entries[key]
            self.counts["expirations"] += 1
            self.counts["misses"] += 1
            return None
        self.order.append(key)
        self.counts["hits"] += 1
        return value

    def put(self, key: tuple[str, Hashable], value: Any, now: float) -> None:
        if key in self.entries:
            self.order.remove(key)
        self.entries[key] = (now, value)
        self.order.append(key)
        if len(self.order) > self.capacity:
            del self.entries[self.order.pop(0)]
            self.counts["evictions"] += 1

    def drop(self, keys: list[tuple[str, Hashable]]) -> None:
        for key in keys:
            if key in self.entries:
                del self.entries[key]
                self.order.remove(key)
                self.counts["invalidations"] += 1


# Reads and puts are drawn three times as often as writes and the passing of time, so entries live long enough
# for recency to decide what is evicted. Each operation draws every argument and uses those its kind takes.
KINDS = ["put_item", "get_item", "put_results", "get_results"] * 3 + ["invalidate", "advance"]
OPERATIONS = st.tuples(
    st.sampled_from(KINDS),
    st.sampled_from(["bars", "news"]),
    st.sampled_from(["k0", "k1", "k2"]),
    st.integers(0, 9),
    st.none() | st.lists(st.sampled_from(["k0", "k1", "k2"]), max_size=3),
    st.sampled_from([0.5, 1.0, 2.0, 3.0]),
)


@settings(max_examples=200, deadline=None)
@given(
    max_items=st.integers(1, 3),
    max_results=st.integers(1, 3),
    ttl=st.sampled_from([1.0, 2.5, 4.0, 20.0]),
    operations=st.lists(OPERATIONS, min_size=10, max_size=60),
)
def test_the_memory_agrees_with_a_reference_model(
    max_items: int, max_results: int, ttl: float, operations: list[tuple[Any, ...]]
) -> None:
    clock = FakeClock(0.0)
    memory = make_memory(clock, max_items=max_items, max_results=max_results, ttl=ttl)
    items, results = ReferenceRegion(max_items, ttl), ReferenceRegion(max_results, ttl)
    for kind, collection, key, value, item_ids, seconds in operations:
        if kind == "advance":
            clock.advance(seconds)
        elif kind == "put_item":
            memory.put_item(collection, key, value)
            items.put((collection, key), value, clock.now)
        elif kind == "put_results":
            memory.put_results(collection, key, value)
            results.put((collection, key), value, clock.now)
        elif kind == "get_item":
            assert memory.get_item(collection, key) == items.get((collection, key), clock.now)
        elif kind == "get_results":
            assert memory.get_results(collection, key) == results.get((collection, key), clock.now)
        else:
            memory.invalidate(collection, item_ids)
            results.drop([held for held in results.order if held[0] == collection])
            items.drop(
                [held for held in items.order if held[0] == collection and (item_ids is None or held[1] in item_ids)]
            )
        expected_statistics = CacheStatistics(
            **{name: items.counts[name] + results.counts[name] for name in items.counts},
            items=len(items.entries),
            results=len(results.entries),
        )
        assert memory.statistics == expected_statistics
