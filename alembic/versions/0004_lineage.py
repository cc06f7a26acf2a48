"""lineage: fills, trades and rejections linked to their signal, orders and fills; typed causal links; new ids

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 09:00:00

Schema: a `fills` table (one row per fill of an order); `backtest_trades` gains entry/exit order and
fill ids and its `signal_id` becomes a foreign key to `signals`; `risk_rejections` gains `signal_id`;
`backtest_runs` gains `engine_version` and `spec` (NULL for the runs stored before, so that a re-run
computes them anew under their new id instead of reusing them); `model_versions` gains `record_id`, the
UUID signals link a model version by.

Data: ids derived by `neuraltrade.canonical.stable_id` changed rule (typed RFC 8785 parts instead of
joined strings). Observations are re-keyed to `Observation.ids_for` of their symbol and timestamp, and
with them every memory item keyed by its observation (the market-state collection: item key, item id,
metadata, full vector, sqlite-vec row); each collection re-keyed has its version bumped, so an HNSW index
file built before reads as stale and is rebuilt by maintenance. Signals' causal links become typed edges
``{"cause_id", "cause_kind", "relation"}``: the first link of a signal is the observation of its bar,
a link naming a model version (by its old UUID; the stored versions and those a run's details list) is
that version's `record_id` (the new UUID of that version), any other is a recalled memory item; ids are
re-keyed as above. Nothing else is re-keyed: the stored runs keep their ids, trades, orders and signals.
Every bar, vector and run is kept.

Downgrade reverses the schema (fills, and the order and fill ids of trades, are dropped: revision 0003
cannot hold them) and re-keys back with `neuraltrade.canonical.legacy_stable_id`'s rule.

On SQLite, foreign keys are enforced (`models.engine`) and cannot be switched off inside the migration's
transaction, so a parent table is never re-created (a DROP TABLE would cascade to its children): new
columns of referenced tables are added and dropped with plain ALTER TABLE, and only leaf tables (trades,
rejections, model versions) go through batch re-creation. Re-keyed primary keys are checked at commit.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from alembic import op
from neuraltrade.canonical import NAMESPACE, format_microseconds, legacy_stable_id, stable_id, uuid5_many
from neuraltrade.types import Observation

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OBSERVATIONS = sa.table(
    "observations",
    sa.column("id", sa.Uuid()),
    sa.column("symbol", sa.String()),
    sa.column("timestamp", sa.BigInteger()),
)
_ITEMS = sa.table(
    "memory_items",
    sa.column("id", sa.BigInteger()),
    sa.column("collection_id", sa.Integer()),
    sa.column("key", sa.String()),
    sa.column("observation_id", sa.Uuid()),
    sa.column("metadata", sa.JSON()),
)
_VECTORS = sa.table("memory_vectors", sa.column("id", sa.BigInteger()))
_SIGNALS = sa.table(
    "signals",
    sa.column("id", sa.Uuid()),
    sa.column("symbol", sa.String()),
    sa.column("timestamp", sa.BigInteger()),
    sa.column("causal_links", sa.JSON()),
)
_MODELS = sa.table("model_versions", sa.column("id", sa.String()), sa.column("record_id", sa.Uuid()))
_TRADES = sa.table("backtest_trades", sa.column("signal_id", sa.Uuid()))
_RUNS = sa.table("backtest_runs", sa.column("details", sa.JSON()))

_ID_MASK = (1 << 63) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_WRAPPERS = {"none": "{}", "int8": "vec_int8({})", "binary": "vec_bit({})"}
_ROWS_PER_BATCH = 10_000
# Foreign keys whose parent key this migration re-keys; PostgreSQL cannot defer them (they were created
# not deferrable), so they are dropped and created again around the re-keying there.
_REKEYED_FOREIGN_KEYS = (
    ("fk_memory_items_observation_id_observations", "memory_items", "observations", "observation_id", "id"),
    ("fk_memory_vectors_id_memory_items", "memory_vectors", "memory_items", "id", "id"),
)


def _item_id(collection_id: int, key: str) -> int:
    """`models.memory_items.item_id` as of this revision (a test checks they agree)."""
    value = None
    if len(key) == 36 and key[8] == "-":
        try:
            value = uuid.UUID(key).int
        except ValueError:
            value = None
    if value is None:
        value = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest(), "big")
    return ((value >> 64) ^ (collection_id * _GOLDEN)) & _ID_MASK


def _legacy_observation_ids(symbol: str, microseconds: Sequence[int]) -> list[uuid.UUID]:
    """`legacy_stable_id("observation", symbol, moment)` for each moment, in bulk (a test checks they agree)."""
    return uuid5_many(NAMESPACE, f"observation\x1f{symbol}\x1f", format_microseconds(list(microseconds)))


def _new_observation_ids(symbol: str, microseconds: Sequence[int]) -> list[uuid.UUID]:
    return Observation.ids_for(symbol, list(microseconds))


ObservationRule = Callable[[str, Sequence[int]], list[uuid.UUID]]


# -- upgrade ------------------------------------------------------------------------------------------


def upgrade() -> None:
    bind = op.get_bind()
    _defer_foreign_keys(bind)
    op.create_table(
        "fills",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("commission", sa.Float(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_fills_order_id_orders"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["backtest_runs.id"], name=op.f("fk_fills_run_id_backtest_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint("order_id", "sequence", name=op.f("uq_fills_order_id_sequence")),
    )
    op.create_index(op.f("ix_fills_run_id"), "fills", ["run_id"], unique=False)

    # backtest_runs is every run table's parent: plain ALTER TABLE, never a re-creation.
    op.add_column("backtest_runs", sa.Column("engine_version", sa.String(length=32), nullable=True))
    op.add_column("backtest_runs", sa.Column("spec", sa.JSON(), nullable=True))

    # A trade's signal id was a plain column; one naming no stored signal cannot become a foreign key
    # (its tag keeps the id).
    bind.execute(
        _TRADES.update()
        .where(_TRADES.c.signal_id.is_not(None))
        .where(_TRADES.c.signal_id.not_in(sa.select(_SIGNALS.c.id)))
        .values(signal_id=None)
    )
    with op.batch_alter_table("backtest_trades", schema=None) as batch_op:
        for column, parent in (
            ("entry_order_id", "orders"),
            ("exit_order_id", "orders"),
            ("entry_fill_id", "fills"),
            ("exit_fill_id", "fills"),
        ):
            batch_op.add_column(sa.Column(column, sa.Uuid(), nullable=True))
            batch_op.create_foreign_key(batch_op.f(f"fk_backtest_trades_{column}_{parent}"), parent, [column], ["id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_backtest_trades_signal_id_signals"), "signals", ["signal_id"], ["id"], ondelete="SET NULL"
        )
    with op.batch_alter_table("risk_rejections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signal_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_risk_rejections_signal_id_signals"), "signals", ["signal_id"], ["id"], ondelete="SET NULL"
        )

    op.add_column("model_versions", sa.Column("record_id", sa.Uuid(), nullable=True))
    models = {name: stable_id("model_version", name) for name in bind.execute(sa.select(_MODELS.c.id)).scalars()}
    _update_many(bind, _MODELS, "id", [{"where": name, "record_id": record} for name, record in models.items()])
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f("uq_model_versions_record_id"), ["record_id"])

    with _foreign_keys_relaxed(bind):
        observations = _rekey_observations(bind, old=_legacy_observation_ids, new=_new_observation_ids)
        model_links = {
            legacy_stable_id("model_version", name): stable_id("model_version", name) for name in _model_versions(bind)
        }
        _type_causal_links(bind, observations, model_links)


def _type_causal_links(
    bind: sa.Connection, observations: Mapping[uuid.UUID, uuid.UUID], model_links: Mapping[uuid.UUID, uuid.UUID]
) -> None:
    """Turn every signal's list of id strings into typed links, with the ids re-keyed."""
    signals = bind.execute(
        sa.select(_SIGNALS.c.id, _SIGNALS.c.symbol, _SIGNALS.c.timestamp, _SIGNALS.c.causal_links)
    ).all()
    untyped = [
        (row.id, row.symbol, row.timestamp, [uuid.UUID(link) for link in row.causal_links])
        for row in signals
        if row.causal_links and isinstance(row.causal_links[0], str)
    ]
    recalled = {link for *_, links in untyped for link in links[1:]} - observations.keys() - model_links.keys()
    items = _memory_item_links(bind, recalled, old=legacy_stable_id, new=stable_id)
    bars = _bar_observations(
        [(symbol, timestamp) for _, symbol, timestamp, _ in untyped],
        old=_legacy_observation_ids,
        new=_new_observation_ids,
    )
    updates = []
    for (signal_id, _, _, links), (was, becomes) in zip(untyped, bars, strict=True):
        bar = becomes if links[0] == was else observations.get(links[0], links[0])
        typed = [_link(bar, "observation", "observed")]
        for link in links[1:]:
            if link in model_links:
                typed.append(_link(model_links[link], "model_version", "predicted_by"))
            else:
                typed.append(_link(observations.get(link, items.get(link, link)), "memory_item", "recalled"))
        updates.append({"where": signal_id, "causal_links": typed})
    _update_many(bind, _SIGNALS, "id", updates)


def _model_versions(bind: sa.Connection) -> set[str]:
    """The ids of every model version signals may link to: the stored ones, and those a run's details name
    (a neural run records the versions its walk-forward refits trained; only the latest one was stored)."""
    names = set(bind.execute(sa.select(_MODELS.c.id)).scalars())
    for (details,) in bind.execute(sa.select(_RUNS.c.details)):
        frames = [details, *(details.get("by_symbol") or {}).values()] if isinstance(details, dict) else []
        for frame in frames:
            versions = frame.get("model_versions") if isinstance(frame, dict) else None
            names.update(name for name in versions or () if isinstance(name, str))
    return names


def _link(cause: uuid.UUID, kind: str, relation: str) -> dict[str, str]:
    return {"cause_id": str(cause), "cause_kind": kind, "relation": relation}


# -- downgrade ----------------------------------------------------------------------------------------


def downgrade() -> None:
    bind = op.get_bind()
    _defer_foreign_keys(bind)
    with _foreign_keys_relaxed(bind):
        observations = _rekey_observations(bind, old=_new_observation_ids, new=_legacy_observation_ids)
        models = {
            stable_id("model_version", name): legacy_stable_id("model_version", name) for name in _model_versions(bind)
        }
        _untype_causal_links(bind, observations, models)

    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_model_versions_record_id"), type_="unique")
        batch_op.drop_column("record_id")
    with op.batch_alter_table("risk_rejections", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_risk_rejections_signal_id_signals"), type_="foreignkey")
        batch_op.drop_column("signal_id")
    with op.batch_alter_table("backtest_trades", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_backtest_trades_signal_id_signals"), type_="foreignkey")
        for column, parent in (
            ("exit_fill_id", "fills"),
            ("entry_fill_id", "fills"),
            ("exit_order_id", "orders"),
            ("entry_order_id", "orders"),
        ):
            batch_op.drop_constraint(batch_op.f(f"fk_backtest_trades_{column}_{parent}"), type_="foreignkey")
            batch_op.drop_column(column)
    op.drop_column("backtest_runs", "spec")
    op.drop_column("backtest_runs", "engine_version")
    op.drop_index(op.f("ix_fills_run_id"), table_name="fills")
    op.drop_table("fills")


def _untype_causal_links(
    bind: sa.Connection, observations: Mapping[uuid.UUID, uuid.UUID], models: Mapping[uuid.UUID, uuid.UUID]
) -> None:
    """Turn every signal's typed links back into a list of id strings, with the ids re-keyed back."""
    rows = bind.execute(
        sa.select(_SIGNALS.c.id, _SIGNALS.c.symbol, _SIGNALS.c.timestamp, _SIGNALS.c.causal_links)
    ).all()
    typed = [
        (row.id, row.symbol, row.timestamp, list(row.causal_links))
        for row in rows
        if row.causal_links and isinstance(row.causal_links[0], dict)
    ]
    recalled = {
        uuid.UUID(link["cause_id"]) for *_, links in typed for link in links if link["cause_kind"] == "memory_item"
    } - observations.keys()
    items = _memory_item_links(bind, recalled, old=stable_id, new=legacy_stable_id)
    bars = _bar_observations(
        [(symbol, timestamp) for _, symbol, timestamp, _ in typed],
        old=_new_observation_ids,
        new=_legacy_observation_ids,
    )
    updates = []
    for (signal_id, _, _, links), (was, becomes) in zip(typed, bars, strict=True):
        plain = []
        for position, link in enumerate(links):
            cause = uuid.UUID(link["cause_id"])
            bar = becomes if position == 0 and link["cause_kind"] == "observation" and cause == was else None
            if bar is None:
                bar = models.get(cause) or observations.get(cause) or items.get(cause, cause)
            plain.append(str(bar))
        updates.append({"where": signal_id, "causal_links": plain})
    _update_many(bind, _SIGNALS, "id", updates)


# -- re-keying ----------------------------------------------------------------------------------------


def _rekey_observations(
    bind: sa.Connection, *, old: ObservationRule, new: ObservationRule
) -> dict[uuid.UUID, uuid.UUID]:
    """Re-key every observation whose id follows the `old` rule to the `new` one, and every memory item
    keyed by it; return the new id of each re-keyed observation by its old id."""
    by_symbol: dict[str, list[tuple[uuid.UUID, int]]] = {}
    for observation, symbol, timestamp in bind.execute(
        sa.select(_OBSERVATIONS.c.id, _OBSERVATIONS.c.symbol, _OBSERVATIONS.c.timestamp)
    ):
        by_symbol.setdefault(symbol, []).append((observation, int(timestamp)))
    renamed: dict[uuid.UUID, uuid.UUID] = {}
    for symbol, rows in by_symbol.items():
        moments = [moment for _, moment in rows]
        for (stored, _), was, becomes in zip(rows, old(symbol, moments), new(symbol, moments), strict=True):
            # An id that follows neither rule is not derived from its symbol and timestamp: it stays.
            if stored == was and was != becomes:
                renamed[stored] = becomes
    _update_many(bind, _OBSERVATIONS, "id", [{"where": was, "id": becomes} for was, becomes in renamed.items()])
    _rekey_items(bind, renamed)
    return renamed


def _rekey_items(bind: sa.Connection, observations: Mapping[uuid.UUID, uuid.UUID]) -> None:
    """Point memory items at their re-keyed observations; an item keyed by its observation id takes the new
    id as key, and the item id derived from it (in `memory_items`, `memory_vectors` and its vector table)."""
    items = bind.execute(
        sa.select(_ITEMS.c.id, _ITEMS.c.collection_id, _ITEMS.c.key, _ITEMS.c.observation_id, _ITEMS.c.metadata).where(
            _ITEMS.c.observation_id.is_not(None)
        )
    ).all()
    updates = []
    item_ids: dict[int, dict[int, int]] = {}
    for item in items:
        becomes = observations.get(item.observation_id)
        if becomes is None:
            continue
        was_key, new_key = str(item.observation_id), str(becomes)
        key = new_key if item.key == was_key else item.key
        metadata = dict(item.metadata)
        if metadata.get("observation_id") == was_key:
            metadata["observation_id"] = new_key
        new_id = _item_id(item.collection_id, key) if key != item.key else item.id
        if new_id != item.id:
            item_ids.setdefault(item.collection_id, {})[item.id] = new_id
        updates.append({"where": item.id, "id": new_id, "key": key, "observation_id": becomes, "metadata": metadata})
    _update_many(bind, _ITEMS, "id", updates)
    renamed = [{"where": was, "id": becomes} for ids in item_ids.values() for was, becomes in ids.items()]
    _update_many(bind, _VECTORS, "id", renamed)
    for collection_id, ids in item_ids.items():
        _rekey_vector_table(bind, collection_id, ids)
    touched = {item.collection_id for item in items if item.observation_id in observations}
    if touched:
        bind.execute(
            sa.text("UPDATE collections SET version = version + 1 WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": sorted(touched)},
        )


def _rekey_vector_table(bind: sa.Connection, collection_id: int, ids: Mapping[int, int]) -> None:
    """Rebuild the sqlite-vec table of collection `collection_id` with its items' new ids.

    sqlite-vec rows cannot change their id in place; the table is copied aside (ids mapped), created
    again as it was and filled partition by partition, as `models.vector_compaction` rebuilds it.
    """
    if bind.dialect.name != "sqlite":
        return
    name, quantization, partition_key = bind.execute(
        sa.text("SELECT name, quantization, partition_key FROM collections WHERE id = :id"), {"id": collection_id}
    ).one()
    table = f"vec_{name}"  # a collection name is validated when the collection is created
    definition = bind.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"), {"name": table}
    ).scalar_one_or_none()
    if definition is None:
        return
    partition = "partition_value" if partition_key is not None else "NULL"
    bind.exec_driver_sql("CREATE TEMP TABLE _rekeyed_ids (old INTEGER PRIMARY KEY, new INTEGER NOT NULL)")
    bind.exec_driver_sql("INSERT INTO _rekeyed_ids (old, new) VALUES (?, ?)", list(ids.items()))
    bind.exec_driver_sql(
        f"CREATE TEMP TABLE _rekeyed_vectors AS SELECT coalesce(m.new, v.item_id) AS id, {partition} AS part, "
        f"v.embedding AS v FROM {table} v LEFT JOIN _rekeyed_ids m ON m.old = v.item_id"
    )
    bind.exec_driver_sql(f"DROP TABLE {table}")
    bind.exec_driver_sql(definition)
    value = _WRAPPERS[quantization].format("v")
    columns = "item_id, partition_value, embedding" if partition_key is not None else "item_id, embedding"
    selected = f"id, part, {value}" if partition_key is not None else f"id, {value}"
    bind.exec_driver_sql(f"INSERT INTO {table} ({columns}) SELECT {selected} FROM _rekeyed_vectors ORDER BY part, id")
    bind.exec_driver_sql("DROP TABLE _rekeyed_vectors")
    bind.exec_driver_sql("DROP TABLE _rekeyed_ids")


def _bar_observations(
    moments: Sequence[tuple[str, int]], *, old: ObservationRule, new: ObservationRule
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """The `old` and the `new` id of the observation of each (symbol, timestamp), in bulk.

    A backtest's signal links first the observation of its bar, which may never have been stored (a run
    on a file of bars): its ids are derived from the signal's own symbol and time.
    """
    by_symbol: dict[str, list[int]] = {}
    for position, (symbol, _) in enumerate(moments):
        by_symbol.setdefault(symbol, []).append(position)
    found: list[tuple[uuid.UUID, uuid.UUID]] = [(uuid.UUID(int=0), uuid.UUID(int=0))] * len(moments)
    for symbol, positions in by_symbol.items():
        stamps = [int(moments[position][1]) for position in positions]
        for position, was, becomes in zip(positions, old(symbol, stamps), new(symbol, stamps), strict=True):
            found[position] = (was, becomes)
    return found


def _memory_item_links(
    bind: sa.Connection,
    links: set[uuid.UUID],
    *,
    old: Callable[..., uuid.UUID],
    new: Callable[..., uuid.UUID],
) -> dict[uuid.UUID, uuid.UUID]:
    """The `new` link id of each memory item (not keyed by an observation) whose `old` link id is in `links`.

    A recalled item without an observation is linked by ``stable_id("memory_item", key)``.
    """
    if not links:
        return {}
    found = {}
    keys = bind.execute(sa.select(_ITEMS.c.key).where(_ITEMS.c.observation_id.is_(None)))
    for batch in keys.partitions(_ROWS_PER_BATCH):
        for (key,) in batch:
            was = old("memory_item", key)
            if was in links:
                found[was] = new("memory_item", key)
    return found


def _update_many(bind: sa.Connection, table: sa.TableClause, key_column: str, rows: list[dict[str, Any]]) -> None:
    """For every row: UPDATE `table` SET its columns WHERE `key_column` = its "where" value (one executemany)."""
    if not rows:
        return
    names = [name for name in rows[0] if name != "where"]
    statement = (
        table.update()
        .where(table.c[key_column] == sa.bindparam("where_", type_=table.c[key_column].type))
        .values({name: sa.bindparam(f"set_{name}", type_=table.c[name].type) for name in names})
    )
    parameters = [{"where_": row["where"], **{f"set_{name}": row[name] for name in names}} for row in rows]
    for start in range(0, len(parameters), _ROWS_PER_BATCH):
        bind.execute(statement, parameters[start : start + _ROWS_PER_BATCH])


def _defer_foreign_keys(bind: sa.Connection) -> None:
    if bind.dialect.name == "sqlite":
        # Checked at commit instead of per statement: re-keyed parents and children are briefly apart.
        # (Reset by SQLite when the transaction ends.)
        bind.exec_driver_sql("PRAGMA defer_foreign_keys = ON")


@contextmanager
def _foreign_keys_relaxed(bind: sa.Connection) -> Iterator[None]:
    if bind.dialect.name == "sqlite":
        yield
        return
    for name, table, *_ in _REKEYED_FOREIGN_KEYS:
        op.drop_constraint(name, table, type_="foreignkey")
    yield
    for name, table, parent, column, parent_column in _REKEYED_FOREIGN_KEYS:
        op.create_foreign_key(name, table, parent, [column], [parent_column], ondelete="CASCADE")
