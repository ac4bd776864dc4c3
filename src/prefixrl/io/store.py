"""Parquet record files, written atomically: a reader sees the old file or the new one, never half.

Records are flat dicts of Parquet-friendly values (str, int, float, bool, list[int]). Validation of
their meaning belongs to the module that owns the record (traces, prefixes).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import fields
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
    except BaseException as e:
        full = disk_full(path.parent, e)
        Path(tmp).unlink(missing_ok=True)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
        raise


def disk_full(folder: Path, error: BaseException) -> bool:
    """Whether a failed write failed for want of space, when the writer said so in its own words (torch's
    zip writer, safetensors and pyarrow raise their own types): the folder's filesystem has under 1 MiB."""
    if isinstance(error, OSError) or not isinstance(error, Exception):
        return False  # an OSError says what it is itself; Ctrl-C is not a full disk
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


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


def _digest(records: list[dict], meta: str) -> str:
    """SHA-256 of the rows and of the metadata's exact text: a collection's state and ledger are read back
    as results (resume points, charged FLOPs), so they are covered like the rows."""
    h = hashlib.sha256(json.dumps(records, sort_keys=True, default=str).encode())
    h.update(b"\0prefixrl.meta\0" + meta.encode())
    return h.hexdigest()


def rows_of(items) -> list[dict]:
    """Flat dataclasses (traces, prefixes) as the rows `write_records` takes. Shallow on purpose:
    `dataclasses.asdict` deep-copies every token id, and was 90 % of saving a store of long traces, which a
    collection does after every request."""
    return [{f.name: getattr(x, f.name) for f in fields(x)} for x in items]


def write_records(path: str | Path, records: list[dict], schema: pa.Schema, meta: dict | None = None) -> None:
    """Rows and JSON metadata, with the SHA-256 of both (verified by `read_records` and `read_meta`)."""
    table = sealed(pa.Table.from_pylist(records, schema=schema), meta)
    atomic_write(path, lambda f: pq.write_table(table, f))


def sealed(table: pa.Table, meta: dict | None = None) -> pa.Table:
    """`table` with `meta` and the SHA-256 of both as its schema metadata."""
    meta_text = json.dumps(meta or {})
    return table.replace_schema_metadata({"prefixrl.sha256": _digest(table.to_pylist(), meta_text),
                                          "prefixrl.meta": meta_text})


def read_meta(path: str | Path) -> dict:
    """The JSON metadata written with a record file, verified with the rows against the stored hash."""
    return _read(Path(path))[1]


def write_json_atomic(path: str | Path, obj) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def write_sealed_json(path: str | Path, obj: dict) -> None:
    """A JSON object that is read back as a result (a finished run's, a finished collection's summary), with
    the SHA-256 of its content under "sha256", verified by `read_sealed_json`."""
    write_json_atomic(path, {**obj, "sha256": _json_digest(obj)})


def read_sealed_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:  # bad UTF-8 and bad JSON are ValueErrors
        raise BadInput(f"{path}: not readable JSON ({type(e).__name__}); corrupt") from None
    if not isinstance(obj, dict) or "sha256" not in obj:
        raise BadInput(f"{path}: no hash stored with it (corrupt, edited, or from an older prefixrl)")
    digest = obj.pop("sha256")
    if digest != _json_digest(obj):
        raise BadInput(f"{path}: content does not match the hash stored with it (corrupt or edited)")
    return obj


def _json_digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def read_records(path: str | Path, schema: pa.Schema) -> list[dict]:
    """Rows of a Parquet file, after checking that every field of `schema` is present."""
    return read_store(path, schema)[0]


def read_store(path: str | Path, schema: pa.Schema) -> tuple[list[dict], dict]:
    """(rows, metadata) of a record file, both verified, in one read."""
    path = Path(path)
    rows, meta, columns = _read(path)
    missing = [f.name for f in schema if f.name not in columns]
    if missing:
        raise BadInput(f"{path}: missing field(s) {', '.join(missing)}")
    return [{f.name: row[f.name] for f in schema} for row in rows], meta


def _read(path: Path) -> tuple[list[dict], dict, list[str]]:
    """(rows, metadata, column names) of a record file, each byte of rows and metadata checked against the
    hash stored with them: a mismatch, a missing hash or unreadable metadata is one line, never a guess."""
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    try:  # decoding is part of reading: a flipped byte in a string column surfaces as bad UTF-8 here
        table = pq.read_table(path)
        rows = table.to_pylist()
        stored = table.schema.metadata or {}
        digest, meta_text = stored.get(b"prefixrl.sha256"), stored.get(b"prefixrl.meta", b"{}").decode()
    except (pa.ArrowException, OSError, UnicodeDecodeError, ValueError) as e:
        raise BadInput(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})".splitlines()[0]) from None
    if digest is None:
        raise BadInput(f"{path}: no hash stored with it (not written by prefixrl, or its metadata is corrupt)")
    if digest.decode(errors="replace") != _digest(rows, meta_text):
        raise BadInput(f"{path}: content does not match the hash stored with it (corrupt, edited, or from an older prefixrl)")
    try:
        meta = json.loads(meta_text)
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise BadInput(f"{path}: its metadata is not a JSON object (corrupt)")
    return rows, meta, table.column_names


def read_jsonl(path: str | Path) -> list[tuple[str, object]]:
    """(where, value) per non-blank line of a JSONL file, `where` being "line N" as an editor numbers it (from
    1, blank lines counted); bad UTF-8 or bad JSON is one line naming the file and that line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})") from None
    out = []
    for n, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadInput(f"{path}: line {n}: not valid UTF-8 (byte {e.start})") from None
        if not line.strip():
            continue
        try:
            out.append((f"line {n}", json.loads(line)))
        except json.JSONDecodeError as e:
            raise BadInput(f"{path}: line {n}: not valid JSON ({e.msg} at column {e.colno})") from None
    return out
