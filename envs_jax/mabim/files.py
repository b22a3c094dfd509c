"""Reading MABIM data files: a per-file cache that notices edits, content hashes, announcements.

Every data file is read through :func:`read_cached`: the parsed value is kept per (path, parse key)
together with the file's stat stamp (modification time in ns, size, inode, change time), so a file
edited between two builds in one process is read again. Each read also yields a :class:`DataFile`
(absolute path, SHA-256, size) for run manifests. :func:`announce` warns once per message (a
fallback to a bundled file, say).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Hashable

BUNDLED_DIR = Path(__file__).parent / "data"
CACHE_SIZE = 64  # parsed files kept; a paper scenario reads at most 8


class MabimDataError(ValueError):
    """A MABIM data file is missing or malformed; the message names the file and the fix."""


@dataclasses.dataclass(frozen=True)
class DataFile:
    """One file a scenario read: absolute path, SHA-256 of its bytes, size in bytes."""

    path: str
    sha256: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        """``{"path", "sha256", "bytes"}`` (JSON-ready)."""
        return dataclasses.asdict(self)


class MabimDataWarning(UserWarning):
    """A MABIM data file was taken from somewhere other than where it was asked for."""


_CACHE: collections.OrderedDict[tuple[str, Hashable], tuple[tuple[int, ...], Any, DataFile]] = (
    collections.OrderedDict()
)
_ANNOUNCED: set[str] = set()


def stamp(path: Path) -> tuple[int, ...]:
    """What changes when a file is rewritten: mtime (ns), size, inode, ctime (ns)."""
    st = path.stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def read_cached(
    path: Path, key: Hashable, parse: Callable[[Path, bytes], Any]
) -> tuple[Any, DataFile]:
    """``(parse(path, raw bytes), DataFile)``, from the cache while the file is unchanged.

    ``key`` tells apart different parses of one file (e.g. different SKU columns). The caller
    checks that ``path`` exists.
    """
    full = str(Path(path).resolve())
    before = stamp(Path(full))
    entry = _CACHE.get((full, key))
    if entry is not None and entry[0] == before:
        _CACHE.move_to_end((full, key))
        return entry[1], entry[2]
    raw = Path(full).read_bytes()
    value = parse(Path(path), raw)
    record = DataFile(full, hashlib.sha256(raw).hexdigest(), len(raw))
    _CACHE[(full, key)] = (before, value, record)
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value, record


def announce(message: str) -> None:
    """Warn (:class:`MabimDataWarning`) the first time this process sees ``message``."""
    if message in _ANNOUNCED:
        return
    _ANNOUNCED.add(message)
    warnings.warn(message, MabimDataWarning, stacklevel=3)


def is_file_name(entry: str) -> bool:
    """True for a table entry that names a CSV file (``x.csv``, a path) rather than a table."""
    return entry.endswith(".csv") or os.sep in entry or "/" in entry
