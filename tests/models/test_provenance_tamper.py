"""Specification of `verify` on a real night's database: untouched it verifies; every tamper is caught and named.

One night (the first 120 bars of the shipped NVDA file: ingestion, embedding, every strategy and its gated
version, reflection) is built once per session in process; each test copies its database and checkpoint
directory, alters the copy as an attacker would, and checks that verification fails naming the record.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import shutil
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlean

from models import provenance_audit
from models.engine import dispose_engines, session_scope
from models.learning_store import load_episodes, save_distillation
from models.provenance import save_provenance_records
from neuraltrade.learning.episodes import Episode
from neuraltrade.learning.patterns import Distillation, Pattern
from neuraltrade.provenance.audit import Report
from neuraltrade.provenance.checkpoint import Checkpoint, SignedCheckpoint, read_checkpoints, write_checkpoint
from neuraltrade.provenance.keys import SigningKey, load_signing_key
from neuraltrade.provenance.log import LeafTree, LogEntry, leaf_hash, signed_message
from neuraltrade.provenance.records import Retrieval, RetrievedItem
from neuraltrade.records import CauseKind
from tasks.provenance import seal_log, verify_with
from tests.conftest import DAILY_DATA


@pytest.fixture(scope="session")
def night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding one sealed night: ``t.db`` and ``checkpoints/``."""
    from flows.distill_reflexions import distill_reflexions
    from flows.embed_observations import embed_observations
    from flows.ingest_bars import ingest_bars
    from flows.run_backtests import run_backtests
    from models.migrations import upgrade_database

    folder = tmp_path_factory.mktemp("night")
    sample = folder / "NVDA.csv"
    sample.write_text("".join((DAILY_DATA / "NVDA.csv").read_text().splitlines(keepends=True)[:121]))
    url = f"sqlite:///{folder}/t.db"
    upgrade_database(url)
    ingest_bars.fn(paths=[str(sample)], database_url=url)
    embed_observations.fn(database_url=url)
    run_backtests.fn(database_url=url)
    distill_reflexions.fn(database_url=url)
    seal_log.fn(url)
    dispose_engines()
    return folder


@pytest.fixture
def copy(night: Path, tmp_path: Path) -> Iterator[str]:
    """A copy of the night's database and checkpoints; yields its URL."""
    shutil.copy(night / "t.db", tmp_path / "t.db")
    shutil.copytree(night / "checkpoints", tmp_path / "checkpoints")
    yield f"sqlite:///{tmp_path}/t.db"
    dispose_engines()


def _file(url: str) -> str:
    return url.removeprefix("sqlite:///")


def tamper(url: str, sql: str, parameters: tuple[object, ...] = ()) -> None:
    dispose_engines()
    connection = sqlean.connect(_file(url))
    connection.execute("PRAGMA foreign_keys = OFF")
    connection.execute(sql, parameters)
    connection.commit()
    connection.close()


def rows(url: str, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    connection = sqlean.connect(_file(url))
    try:
        return connection.execute(sql, parameters).fetchall()
    finally:
        connection.close()


def verified(url: str) -> Report:
    dispose_engines()
    return verify_with(url)


def named(report: Report, kind: str, record_id: object, check: str | None = None) -> bool:
    """Whether a finding names record `record_id` of `kind` (and the `check`, if given)."""
    wanted = str(uuid.UUID(str(record_id))) if kind != "checkpoint" else str(record_id)
    return any(
        finding.kind == kind and finding.record_id == wanted and (check is None or finding.check == check)
        for finding in report.findings
    )


def entry(url: str, position: int) -> tuple[str, uuid.UUID]:
    [(kind, record)] = rows(url, "SELECT kind, record_id FROM log_entries WHERE position = ?", (position,))
    return str(kind), uuid.UUID(hex=str(record))


def one(url: str, sql: str) -> uuid.UUID:
    return uuid.UUID(hex=str(rows(url, sql)[0][0]))


def test_an_untouched_night_verifies_every_record_signature_and_link(copy: str) -> None:
    report = verified(copy)

    assert report.ok, report.summary()
    assert report.checkpoint_size is not None and report.records == report.log_size == report.checkpoint_size > 500
    assert report.signatures == report.records and report.links > 0 and report.retrievals > 0
    assert report.summary().startswith("verified ")


def test_a_changed_field_is_named(copy: str) -> None:
    fill = one(copy, "SELECT id FROM fills ORDER BY id LIMIT 1")
    tamper(copy, "UPDATE fills SET price = price * 1.01 WHERE id = ?", (fill.hex,))

    report = verified(copy)

    assert not report.ok and named(report, "fill", fill, "content")
    assert report.summary().startswith(f"FAILED fill {fill}: content")


def test_a_deleted_record_is_named(copy: str) -> None:
    critique = one(copy, "SELECT id FROM critiques ORDER BY id LIMIT 1")
    tamper(copy, "DELETE FROM critiques WHERE id = ?", (critique.hex,))

    assert named(verified(copy), "critique", critique, "deleted")


def test_a_back_dated_record_inserted_behind_the_log_is_named(copy: str) -> None:
    forged = uuid.uuid4()
    columns = "strategy_id, symbol, direction, confidence, features, reasoning, causal_links, run_id"
    tamper(
        copy,
        f"INSERT INTO signals (id, timestamp, {columns}) SELECT ?, timestamp - 86400000000, {columns} "
        "FROM signals ORDER BY timestamp LIMIT 1",
        (forged.hex,),
    )

    assert named(verified(copy), "signal", forged, "unlogged")


def test_two_swapped_log_entries_are_named(copy: str) -> None:
    size = rows(copy, "SELECT count(*) FROM log_entries")[0][0]
    first, second = 3, int(str(size)) // 2
    named_first = entry(copy, first)
    tamper(copy, "UPDATE log_entries SET position = -1 WHERE position = ?", (first,))
    tamper(copy, "UPDATE log_entries SET position = ? WHERE position = ?", (first, second))
    tamper(copy, "UPDATE log_entries SET position = ? WHERE position = -1", (second,))

    report = verified(copy)

    assert not report.ok and named(report, *entry(copy, first), "log")
    assert named(report, *named_first, "log")


def test_a_truncated_log_with_a_re_signed_smaller_checkpoint_is_caught(copy: str, tmp_path: Path) -> None:
    size = int(str(rows(copy, "SELECT count(*) FROM log_entries")[0][0]))
    cut = size - 10
    gone = entry(copy, cut)
    tamper(copy, "DELETE FROM log_entries WHERE position >= ?", (cut,))
    trusted = read_checkpoints(tmp_path / "checkpoints")[-1]
    dispose_engines()
    seal_log.fn(copy)  # the operator, who holds the key, signs the shorter log

    dispose_engines()
    report = verify_with(copy, checkpoint_file=trusted.source)

    assert not report.ok and any(finding.check == "truncated" for finding in report.findings)
    assert named(report, *gone, "unlogged")


def test_two_checkpoints_of_one_size_with_different_roots_are_a_split_view(copy: str, tmp_path: Path) -> None:
    [sealed] = read_checkpoints(tmp_path / "checkpoints")
    forged = Checkpoint(**{**sealed.checkpoint.field_values(), "root_hash": hashlib.sha256(b"another log").hexdigest()})
    path = write_checkpoint(tmp_path / "elsewhere", SignedCheckpoint.sign(forged, load_signing_key()))
    shutil.copy(path, tmp_path / "checkpoints" / f"checkpoint-{forged.tree_size:012d}-forged.json")

    report = verified(copy)

    assert any(finding.check == "split view" for finding in report.findings)
    assert any(finding.check == "consistency" and "forged" in finding.record_id for finding in report.findings)


def test_a_signature_replayed_onto_another_record_is_named(copy: str) -> None:
    [(signature,)] = rows(copy, "SELECT signature FROM log_entries WHERE position = 5")
    victim = entry(copy, 6)
    tamper(copy, "UPDATE log_entries SET signature = ? WHERE position = 6", (signature,))

    report = verified(copy)

    assert named(report, *victim, "signature")


def test_a_replayed_signature_is_named_by_the_verifying_processes_too(
    copy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fewer signatures than a batch are checked in process; small batches send these to the pool.
    monkeypatch.setattr(provenance_audit, "_SIGNATURE_BATCH", 50)
    [(signature,)] = rows(copy, "SELECT signature FROM log_entries WHERE position = 5")
    last = rows(copy, "SELECT max(position) FROM log_entries")[0][0]
    victims = [entry(copy, position) for position in (6, last)]
    for position in (6, last):
        tamper(copy, "UPDATE log_entries SET signature = ? WHERE position = ?", (signature, position))
    started = len(multiprocessing.active_children())

    report = verified(copy)

    assert report.signatures > 10 * 50
    assert [named(report, *victim, "signature") for victim in victims] == [True, True]
    assert sum(finding.check == "signature" for finding in report.findings) == 2
    assert len(multiprocessing.active_children()) == started


def test_a_record_signed_by_an_unknown_key_is_named(copy: str) -> None:
    kind, record = entry(copy, 7)
    [(origin,)] = rows(copy, "SELECT origin FROM log_origin")
    [(digest,)] = rows(copy, "SELECT digest FROM log_entries WHERE position = 7")
    stranger = SigningKey.generate()
    # The stranger signs the same digest's message? It cannot know the message without the record: it
    # signs what it can, and claims its own key id.
    tamper(
        copy,
        "UPDATE log_entries SET key_id = ?, signature = ? WHERE position = 7",
        (stranger.key_id, stranger.sign(bytes(digest))),
    )

    report = verified(copy)

    assert named(report, kind, record, "key") and origin


def test_an_inner_node_posing_as_a_leaf_is_caught(copy: str) -> None:
    leaves = [bytes(leaf) for (leaf,) in rows(copy, "SELECT leaf_hash FROM log_entries ORDER BY position")]
    node = hashlib.sha256(b"\x01" + leaves[8] + leaves[9]).digest()
    victim = entry(copy, 8)
    tamper(copy, "UPDATE log_entries SET leaf_hash = ? WHERE position = 8", (node,))

    assert named(verified(copy), *victim, "log")
    # And as a proof: the node's children, presented as a leaf's data, prove nothing.
    tree = LeafTree(leaves)
    with_node = LeafTree([*leaves[:8], node, *leaves[10:]])
    assert tree.root() != with_node.root()


def test_the_last_entry_repeated_is_logged_twice_and_changes_the_root(copy: str) -> None:
    size = int(str(rows(copy, "SELECT count(*) FROM log_entries")[0][0]))
    [row] = rows(copy, "SELECT * FROM log_entries WHERE position = ?", (size - 1,))
    columns = [name for (_, name, *_) in rows(copy, "PRAGMA table_info(log_entries)")]
    last = dict(zip(columns, row, strict=True))
    kind, record = entry(copy, size - 1)
    repeated = LogEntry(
        position=size,
        kind=kind,
        schema_version=int(str(last["schema_version"])),
        record_id=record,
        digest=bytes(last["digest"]),
        key_id=str(last["key_id"]),
        signature=bytes(last["signature"]),
    )
    leaf = leaf_hash(repeated.leaf_data(bytes(last["leaf_hash"])))
    tamper(
        copy,
        "INSERT INTO log_entries SELECT ?, kind, schema_version, record_id, digest, key_id, signature, ?, logged_at "
        "FROM log_entries WHERE position = ?",
        (size, leaf, size - 1),
    )

    assert named(verified(copy), kind, record, "log")
    three = [leaf_hash(bytes([value])) for value in range(3)]
    assert LeafTree(three).root() != LeafTree([*three, three[-1]]).root()


def _episodes(url: str) -> list[Episode]:
    with session_scope(url) as session:
        return sorted(load_episodes(session), key=lambda episode: str(episode.id))


def _pattern(episodes: list[Episode], **changes: Any) -> tuple[Distillation, Pattern]:
    members = tuple(sorted((episode.id for episode in episodes[:4]), key=str))
    strategy = episodes[0].strategy_id
    distillation_id = uuid.uuid4()
    pattern = Pattern(
        **{
            "id": uuid.uuid4(),
            "distillation_id": distillation_id,
            "strategy": strategy,
            "side": 1,
            "centroid": (0.0, 0.0, 0.0, 0.0),
            "radius": 1.0,
            "members": members,
            "wins": 4,
            "trials": 4,
            "decayed_wins": 4.0,
            "decayed_trials": 4.0,
            "alpha": 5.0,
            "beta": 1.0,
            "interval_low": 0.4,
            "interval_high": 0.99,
            "base_rate": 0.5,
            "p_value": 0.06,
            "q_value": 0.06,
            "better_than_base": False,
            "worse_than_base": False,
            **changes,
        }
    )
    distillation = Distillation(
        id=distillation_id,
        strategy=strategy,
        as_of=max(episode.outcome_known_at for episode in episodes) + timedelta(days=1),
        config_digest="0" * 64,
        episode_ids=tuple(sorted({*members, *pattern.members}, key=str)),
        feature_means=(0.0,) * 4,
        feature_scales=(1.0,) * 4,
        base_rate=0.5,
        pattern_ids=(pattern.id,),
    )
    return distillation, pattern


def test_a_pattern_whose_counts_do_not_recompute_from_its_verdicts_is_named(copy: str) -> None:
    episodes = _episodes(copy)
    wins = sum(
        int(str(value))
        for (value,) in rows(
            copy,
            "SELECT success FROM verdicts WHERE episode_id IN ({})".format(
                ",".join(f"'{episode.id.hex}'" for episode in episodes[:4])
            ),
        )
    )
    distillation, pattern = _pattern(episodes, wins=(wins + 1) % 5)
    with session_scope(copy, write=True) as session:
        save_distillation(session, distillation, [pattern])

    assert named(verified(copy), "pattern", pattern.id, "counts")


def test_a_pattern_citing_a_missing_episode_is_named(copy: str) -> None:
    episodes = _episodes(copy)
    missing = uuid.uuid4()
    members = tuple(sorted([*(episode.id for episode in episodes[:3]), missing], key=str))
    distillation, pattern = _pattern(episodes, members=members)
    with session_scope(copy, write=True) as session:
        save_distillation(session, distillation, [pattern])

    assert named(verified(copy), "pattern", pattern.id, "citation")


def test_a_retrieval_of_an_outcome_not_yet_known_at_the_decision_is_named(copy: str) -> None:
    episode = _episodes(copy)[0]
    retrieval = Retrieval.of(
        strategy_id=episode.strategy_id,
        symbol=episode.symbol,
        decision_time=episode.outcome_known_at - timedelta(days=1),
        horizon_bars=0,
        items=(RetrievedItem(cause_kind=CauseKind.EPISODE, cause_id=episode.id, known_at=episode.outcome_known_at),),
    )
    with session_scope(copy, write=True) as session:
        save_provenance_records(session, [retrieval])

    assert named(verified(copy), "retrieval", retrieval.id, "point in time")


def test_a_crash_before_commit_leaves_neither_record_nor_entry_and_a_re_run_appends_nothing(copy: str) -> None:
    from flows.run_backtests import run_backtests

    entries = rows(copy, "SELECT count(*) FROM log_entries")
    retrieval = _retrieval_of(copy)
    with pytest.raises(RuntimeError), session_scope(copy, write=True) as session:
        save_provenance_records(session, [retrieval])
        raise RuntimeError("killed before commit")
    assert rows(copy, "SELECT count(*) FROM log_entries") == entries
    assert rows(copy, "SELECT count(*) FROM provenance_records WHERE id = ?", (retrieval.id.hex,)) == [(0,)]

    run_backtests.fn(database_url=copy)  # gated runs now read the memory the night learnt: new runs
    grown = rows(copy, "SELECT count(*) FROM log_entries")
    run_backtests.fn(database_url=copy)  # the same again: every record is stored and logged as it is

    assert rows(copy, "SELECT count(*) FROM log_entries") == grown
    assert verified(copy).ok


def _retrieval_of(url: str) -> Retrieval:
    episode = _episodes(url)[0]
    return Retrieval.of(
        strategy_id="crash",
        symbol=episode.symbol,
        decision_time=episode.outcome_known_at,
        horizon_bars=0,
        items=(RetrievedItem(cause_kind=CauseKind.EPISODE, cause_id=episode.id, known_at=episode.outcome_known_at),),
    )


def test_signed_messages_bind_origin_kind_and_version() -> None:
    assert signed_message("a", "fill", 1, b"{}") != signed_message("b", "fill", 1, b"{}")
    assert signed_message("a", "fill", 1, b"{}") != signed_message("a", "order", 1, b"{}")
    assert signed_message("a", "fill", 1, b"{}") != signed_message("a", "fill", 2, b"{}")


def test_a_night_killed_while_it_writes_then_run_again_converges_and_verifies(
    copy: str, night: Path, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from flows.run_backtests import run_backtests

    entries = int(rows(copy, "SELECT count(*) FROM log_entries")[0][0])
    script = "import sys; from flows.run_backtests import run_backtests; run_backtests.fn(database_url=sys.argv[1])"
    process = subprocess.Popen(
        [sys.executable, "-c", script, copy], cwd=Path(__file__).parents[2], env=dict(os.environ)
    )
    deadline = time.monotonic() + 120
    # Killed as soon as its first runs are committed (the gated runs that read what the night learnt).
    while process.poll() is None and time.monotonic() < deadline:
        if int(rows(copy, "SELECT count(*) FROM log_entries")[0][0]) > entries:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the night ended before it could be killed"

    run_backtests.fn(database_url=copy)
    dispose_engines()
    seal_log.fn(copy)

    report = verified(copy)
    assert report.ok, report.summary()
    # The same records, logged once each as they are, as a night that was never killed.
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copy(night / "t.db", clean / "t.db")
    run_backtests.fn(database_url=f"sqlite:///{clean}/t.db")
    dispose_engines()
    logged = "SELECT kind, record_id, digest FROM log_entries WHERE kind != 'signing_key' ORDER BY 1, 2, 3"
    assert rows(copy, logged) == rows(f"sqlite:///{clean}/t.db", logged)
    assert rows(copy, "SELECT count(*) FROM backtest_runs") == rows(
        f"sqlite:///{clean}/t.db", "SELECT count(*) FROM backtest_runs"
    )


def test_a_record_moved_to_another_run_or_an_order_re_pointed_at_another_decision_is_named(copy: str) -> None:
    runs = [uuid.UUID(hex=str(run)) for (run,) in rows(copy, "SELECT DISTINCT run_id FROM fills ORDER BY run_id")]
    fill = one(copy, "SELECT id FROM fills ORDER BY id LIMIT 1")
    [(fill_run,)] = rows(copy, "SELECT run_id FROM fills WHERE id = ?", (fill.hex,))
    elsewhere = next(run for run in runs if run.hex != fill_run)
    tamper(copy, "UPDATE fills SET run_id = ? WHERE id = ?", (elsewhere.hex, fill.hex))
    [(order, run)] = rows(copy, "SELECT entry_order_id, run_id FROM backtest_trades ORDER BY id LIMIT 1")
    [(other,)] = rows(
        copy,
        "SELECT id FROM signals WHERE run_id = ? AND id != (SELECT signal_id FROM orders WHERE id = ?) LIMIT 1",
        (run, order),
    )
    tamper(copy, "UPDATE orders SET signal_id = ? WHERE id = ?", (other, order))

    report = verified(copy)

    assert named(report, "fill", fill, "context")
    assert named(report, "order", uuid.UUID(hex=str(order)), "context")
