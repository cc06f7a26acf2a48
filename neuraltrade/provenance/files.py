"""Files provenance writes outside the database (the key, checkpoints, the key list): whole or not at all."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644, replace: bool = True) -> None:
    """Write `data` to `path` through a temporary file beside it, created with `mode` (so a key is never
    readable by others, not even briefly) and synced, then renamed over `path`; a crash leaves the old
    file or the new one, never half of one.

    Without `replace` an existing `path` is left alone and `FileExistsError` raised (the rename is a hard
    link, which refuses a target that exists).
    """
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
