"""Every error neuraltrade raises: one base class, one subclass per condition.

Each message names the offending value and where it came from, so a CLI can print it on one line.
"""

from __future__ import annotations


class NeuralTradeError(Exception):
    """Base class of every error the platform raises on purpose."""


class ConfigError(NeuralTradeError):
    """A configuration value is out of its allowed range or of the wrong kind."""


class ValidationError(NeuralTradeError):
    """A domain value (a signal, an order, an observation) breaks one of its invariants."""


class SerializationError(NeuralTradeError):
    """A record cannot be written to or read from its canonical JSON form."""


class FileRejected(NeuralTradeError):
    """A whole input file cannot be read: unknown layout, missing columns, unreadable bytes."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class DimensionMismatch(NeuralTradeError):
    """Vectors given to a collection have another dimension than the collection holds."""

    def __init__(self, collection: str, expected: int, was: int) -> None:
        super().__init__(f"collection {collection!r} holds {expected}-d vectors, was given {was}-d")
        self.collection = collection
        self.expected = expected
        self.was = was


class FingerprintMismatch(NeuralTradeError):
    """Vectors come from another embedder than the one a collection was created with."""

    def __init__(self, collection: str, expected: str, was: str) -> None:
        super().__init__(f"collection {collection!r} holds vectors of embedder {expected}, was given vectors of {was}")
        self.collection = collection
        self.expected = expected
        self.was = was


class InvalidVector(NeuralTradeError):
    """A vector holds NaN or infinity, or is not a flat array of numbers."""


class CollectionNotFound(NeuralTradeError):
    """A vector collection was named that does not exist."""


class MarketMemoryMissing(CollectionNotFound):
    """A strategy needs the market memory and the database holds none yet."""

    def __init__(self, database_url: str) -> None:
        super().__init__(
            f"the market memory a strategy reads is missing from {database_url}: run "
            f"`neuraltrade nightly --db {database_url}` (or `ingest` and `embed`) first"
        )


class NotEnoughHistory(NeuralTradeError):
    """An embedding window needs more bars than a symbol has."""


class UnknownSymbol(NeuralTradeError):
    """A symbol was named that has no bars."""

    def __init__(self, symbol: str) -> None:
        super().__init__(f"no bars are stored for symbol {symbol!r}")
        self.symbol = symbol


class StorageError(NeuralTradeError):
    """The database cannot be opened, migrated or written as asked."""


class DatabaseMissing(StorageError):
    """A command that only reads was pointed at a database file that does not exist."""

    def __init__(self, database_url: str, path: str) -> None:
        super().__init__(
            f"no database at {path} ({database_url}); `neuraltrade init` creates one, `neuraltrade nightly` fills it"
        )
        self.database_url = database_url
        self.path = path


class IndexFileError(NeuralTradeError):
    """A saved vector index cannot be loaded: a file is missing, unreadable, or the two files do not match."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"index file {path}: {reason}")
        self.path = path
        self.reason = reason


class DuplicateItem(NeuralTradeError):
    """An insert names items a collection already holds (use upsert to replace them)."""

    def __init__(self, collection: str, keys: list[str]) -> None:
        shown = ", ".join(repr(key) for key in keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        super().__init__(f"collection {collection!r} already holds {shown}; upsert replaces items, insert does not")
        self.collection = collection
        self.keys = keys


class RecallBelowThreshold(NeuralTradeError):
    """A recall audit of a vector collection measured less than the required recall."""

    def __init__(self, collection: str, recall: float, threshold: float, k: int = 10) -> None:
        super().__init__(
            f"collection {collection!r} answered with recall@{k} {recall:.3f}, below the required {threshold:.3f}"
        )
        self.k = k
        self.collection = collection
        self.recall = recall
        self.threshold = threshold


class MemoryIntegrityError(NeuralTradeError):
    """A vector collection's stores disagree: vectors without items, mixed fingerprints, NaN, an empty index."""

    def __init__(self, collection: str, problems: list[str]) -> None:
        super().__init__(f"collection {collection!r} fails its integrity check: " + "; ".join(problems))
        self.collection = collection
        self.problems = problems


class LookAheadError(NeuralTradeError):
    """A strategy's signals on a bar changed when later bars were added: it read the future."""

    def __init__(self, strategy: str, symbol: str, bar: int, timestamp: str) -> None:
        super().__init__(
            f"strategy {strategy!r} on {symbol}: its signal at bar {bar} ({timestamp}) changed when later bars "
            "were added, so it reads bars it could not have seen"
        )
        self.strategy = strategy
        self.symbol = symbol
        self.bar = bar
        self.timestamp = timestamp


class InvalidOrder(NeuralTradeError):
    """An order cannot be placed as given: a bad size, prices on the wrong side, an unknown symbol."""


class IllegalTransition(NeuralTradeError):
    """An order was asked to move to a status its lifecycle does not allow from where it is."""

    def __init__(self, client_order_id: str, current: str, requested: str) -> None:
        super().__init__(f"order {client_order_id!r} cannot go from {current} to {requested}")
        self.client_order_id = client_order_id
        self.current = current
        self.requested = requested


class DuplicateOrder(NeuralTradeError):
    """A client order id was reused for a different order (the same order again is accepted idempotently)."""

    def __init__(self, client_order_id: str, reason: str) -> None:
        super().__init__(f"client order id {client_order_id!r} already names another order: {reason}")
        self.client_order_id = client_order_id
        self.reason = reason


class UnknownStrategy(NeuralTradeError):
    """A strategy was named that the platform does not have, or given a parameter it does not take."""


class UnknownRun(NeuralTradeError):
    """A backtest run id was named that is not stored."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no backtest run {run_id!r} is stored")
        self.run_id = run_id


class UnknownOrder(NeuralTradeError):
    """A client order id was named that the order manager or the database does not hold."""

    def __init__(self, client_order_id: str) -> None:
        super().__init__(f"no order with client order id {client_order_id!r} is known")
        self.client_order_id = client_order_id


class BacktestsFailed(NeuralTradeError):
    """Some backtests of a night failed; the others were stored."""

    def __init__(self, failures: list[dict[str, str]], total: int) -> None:
        first = failures[0]
        super().__init__(
            f"{len(failures)} of {total} backtests failed; first: {first['strategy']} on {first['symbol']}: "
            f"{first['error']}"
        )
        self.failures = failures
        self.total = total


class InvalidItemId(NeuralTradeError):
    """An item id is not a non-empty ``str``, ``int`` or ``uuid.UUID`` of at most 256 characters."""

    def __init__(self, value: object, reason: str) -> None:
        try:
            shown = repr(value)
        except ValueError:  # an int of more digits than Python will write out
            shown = f"<{type(value).__name__} too large to print>"
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        super().__init__(f"item id {shown} of type {type(value).__name__} {reason}")
        self.value = value
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[object, str]]:
        return type(self), (self.value, self.reason)


class DatabaseUnavailable(StorageError):
    """The database cannot be opened, read or written: a missing folder, a locked or corrupt file, no schema."""

    def __init__(self, database_url: str, cause: str) -> None:
        super().__init__(f"database {database_url}: {cause}")
        self.database_url = database_url
        self.cause = cause

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (self.database_url, self.cause)


class DatabaseLocked(DatabaseUnavailable, TimeoutError):
    """Another writer held the database past the busy timeout; the same work may pass if tried again.

    Also a `TimeoutError`, which is what it is, so that retry policies that know nothing of neuraltrade
    (`tasks.retry`) retry it.
    """


class DatabaseConnectionLost(DatabaseUnavailable, ConnectionError):
    """The connection to a database server failed or dropped; the same work may pass if tried again.

    Also a `ConnectionError`, so that retry policies that know nothing of neuraltrade retry it.
    """


class IngestionFailed(NeuralTradeError):
    """Some files of an ingestion run failed (refused whole, holding no data row, every row quarantined);
    the run's other files were stored, and `summary` reports every file."""

    def __init__(self, failures: dict[str, str], summary: dict[str, object]) -> None:
        shown = "; ".join(f"{path}: {reason}" for path, reason in failures.items())
        files = summary.get("outcomes")
        total = len(files) if isinstance(files, list) else len(failures)
        # One failed file reads exactly as the reason it failed; several are counted first.
        super().__init__(shown if len(failures) == 1 else f"{len(failures)} of {total} files failed: {shown}")
        self.failures = failures
        self.summary = summary

    def __reduce__(self) -> tuple[type[IngestionFailed], tuple[dict[str, str], dict[str, object]]]:
        # Rebuilt from its arguments when a flow's state is serialised, so `summary` survives the trip.
        return (type(self), (self.failures, self.summary))


class QualityCheckUnavailable(NeuralTradeError):
    """A data-quality check could not be evaluated at all: the checking tool failed, not the data."""

    def __init__(self, check: str, reason: str) -> None:
        super().__init__(f"data-quality check {check!r} could not be evaluated: {reason}")
        self.check = check
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (self.check, self.reason)


class SigningKeyMissing(NeuralTradeError):
    """No signing key file where the configuration says one is (`neuraltrade init` creates it)."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"no signing key at {path}: run `neuraltrade init` to create one "
            "(or point NEURALTRADE_SIGNING_KEY at an existing key file)"
        )
        self.path = path


class SigningKeyInvalid(NeuralTradeError):
    """A signing key file exists but cannot be used: not an Ed25519 private key, or readable by others."""


class CheckpointInvalid(NeuralTradeError):
    """A checkpoint or public key list file is malformed, or its signature does not verify."""


class CheckpointDirectoryTaken(NeuralTradeError):
    """A log would be sealed into a checkpoint directory that holds another log's checkpoints or key list."""


class ProvenanceFailed(NeuralTradeError):
    """`neuraltrade verify` found a record, link, signature or log entry that does not verify."""
