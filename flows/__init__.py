"""Prefect flows: composition only, one flow per module, named verb_noun."""

#: Worker threads per flow: SQLite has one writer at a time, so more threads only queue on its lock.
MAX_WORKERS = 2
