"""Parquet record files, written atomically: a reader sees the old file or the new one, never half.

Records are flat dicts of Parquet-friendly values (str, int, float, bool, list[int]). Validation of
their meaning belongs to the module that owns the record (traces, prefixes).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prefixrl.io.errors import BadInput


def atomic_write(path: str | Path, write) -> None:
    """Call write(binary file) on a temporary file beside `path`, fsync it, rename it over `path`, and
    fsync the folder: a reader (or a run killed at any instant) sees the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; a store gets the mode any file would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on one filesystem
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: str | Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _digest(records: list[dict]) -> str:
    return hashlib.sha256(json.dumps(records, sort_keys=True, default=str).encode()).hexdigest()


def write_records(path: str | Path, records: list[dict], schema: pa.Schema, meta: dict | None = None) -> None:
    """Rows, the SHA-256 of their content (verified by `read_records`) and optional JSON metadata."""
    table = pa.Table.from_pylist(records, schema=schema)
    table = table.replace_schema_metadata({"prefixrl.sha256": _digest(table.to_pylist()),
                                           "prefixrl.meta": json.dumps(meta or {})})
    atomic_write(path, lambda f: pq.write_table(table, f))


def read_meta(path: str | Path) -> dict:
    """The JSON metadata written with a record file ({} if none)."""
    try:
        raw = (pq.read_schema(path).metadata or {}).get(b"prefixrl.meta", b"{}")
        return json.loads(raw)
    except (pa.ArrowException, OSError, UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise BadInput(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})".splitlines()[0]) from None


def write_json_atomic(path: str | Path, obj) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def read_records(path: str | Path, schema: pa.Schema) -> list[dict]:
    """Rows of a Parquet file, after checking that every field of `schema` is present."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    try:  # decoding is part of reading: a flipped byte in a string column surfaces as bad UTF-8 here
        table = pq.read_table(path)
        rows = table.to_pylist()
        digest = (table.schema.metadata or {}).get(b"prefixrl.sha256")
        digest = digest.decode() if digest is not None else None
    except (pa.ArrowException, OSError, UnicodeDecodeError, ValueError) as e:
        raise BadInput(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})".splitlines()[0]) from None
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise BadInput(f"{path}: missing field(s) {', '.join(missing)}")
    if digest is not None and digest != _digest(rows):
        raise BadInput(f"{path}: content does not match the hash stored with it (corrupt or edited)")
    return [{f.name: row[f.name] for f in schema} for row in rows]


def read_jsonl(path: str | Path) -> list[tuple[int, object]]:
    """(row, value) per non-blank line of a JSONL file; bad UTF-8 or bad JSON is one line naming the
    file and the row (rows count from 0, blank lines included)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})") from None
    out = []
    for i, raw in enumerate(data.split(b"\n")):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadInput(f"{path}: row {i}: not valid UTF-8 (byte {e.start})") from None
        if not line.strip():
            continue
        try:
            out.append((i, json.loads(line)))
        except json.JSONDecodeError as e:
            raise BadInput(f"{path}: row {i}: not valid JSON ({e.msg} at column {e.colno})") from None
    return out

