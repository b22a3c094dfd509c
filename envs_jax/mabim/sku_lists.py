"""MABIM SKU lists: given inline, by name (``sku100``: the data directory's copy, else the bundled
one, announced) or by path; files have ``#`` comment lines, a ``SKU`` header, one id a line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from envs_jax.mabim.files import (
    BUNDLED_DIR,
    DataFile,
    MabimDataError,
    announce,
    is_file_name,
    read_cached,
)


def data_lines(raw: bytes) -> list[str]:
    """The non-empty lines of a file's bytes that are not ``#`` comments."""
    return [
        ln
        for ln in raw.decode("utf-8").splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]


def must_exist(path: Path) -> None:
    """:class:`MabimDataError` naming ``path`` unless it is a file."""
    if not path.is_file():
        raise MabimDataError(f"MABIM data file not found: {path}")


def sku_list_path(
    name_or_path: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Where a SKU list is read from: a path as given; a name (``"sku100"``) from ``data_dir``
    when it holds ``sku100.sku_list.csv``, else from the bundled lists (announced when a data
    directory was given)."""
    text = str(name_or_path)
    if is_file_name(text):
        must_exist(Path(text))
        return Path(text)
    fname = f"{text}.sku_list.csv"
    bundled = BUNDLED_DIR / fname
    if data_dir is not None:
        local = Path(data_dir) / fname
        if local.is_file():
            return local
        if bundled.is_file():
            announce(f"MABIM data: {local} not found; using the bundled SKU list {bundled}")
            return bundled
    elif bundled.is_file():
        return bundled
    names = sorted(f.name.split(".")[0] for f in BUNDLED_DIR.glob("*.sku_list.csv"))
    where = f"{Path(data_dir) / fname} or {bundled}" if data_dir is not None else str(bundled)
    raise MabimDataError(
        f"SKU list {text!r} not found (looked in {where}); bundled lists: {', '.join(names)}"
    )


def _parse_sku_list(path: Path, raw: bytes) -> tuple[str, ...]:
    lines = data_lines(raw)
    if not lines or lines[0].strip() != "SKU":
        raise MabimDataError(f"{path}: a SKU list needs a 'SKU' header line before the ids")
    return check_sku_ids(tuple(ln.strip() for ln in lines[1:]), str(path))


def check_sku_ids(ids: Sequence[str], where: str) -> tuple[str, ...]:
    """The ids as a tuple; :class:`MabimDataError` for an empty list or a repeated id."""
    ids = tuple(str(i) for i in ids)
    if not ids:
        raise MabimDataError(f"{where}: the SKU list is empty")
    if len(set(ids)) != len(ids):
        raise MabimDataError(f"{where}: the SKU list repeats ids")
    return ids


def load_sku_list(
    sku_list: str | Sequence[str], data_dir: str | os.PathLike[str] | None = None
) -> tuple[tuple[str, ...], DataFile | None]:
    """``(ids, file read)`` of a SKU list: ids given inline (a tuple), a name or a path (see
    :func:`sku_list_path`; the file has ``#`` comment lines, a ``SKU`` header, one id a line)."""
    if not isinstance(sku_list, (str, os.PathLike)):
        return check_sku_ids(sku_list, "the inline SKU list"), None
    path = sku_list_path(sku_list, data_dir)
    return read_cached(path, "sku_list", _parse_sku_list)


def read_sku_list(
    name_or_path: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None = None
) -> tuple[str, ...]:
    """The ids of a SKU list (see :func:`load_sku_list`)."""
    return load_sku_list(str(name_or_path), data_dir)[0]
