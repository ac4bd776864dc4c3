"""Problems from a dataset as users have it: a local JSONL / JSON / Parquet / CSV file, a folder saved with
`datasets.save_to_disk`, or a Hugging Face Hub id (through `datasets.load_dataset`, so `HF_HUB_OFFLINE`
and the local cache are honoured; nothing else is fetched).

Fields are dotted paths into a row (`reward_model.ground_truth`; a number indexes a list). A question
field that holds a chat-message list (DAPO-Math-17k's `prompt`) is understood: its last user turn is
the question, and a system turn, the same in every row, is the run's system prompt (`dataset_system`).
A problem's id is its content, not its row: the value of `id_field` when one is named,
otherwise a hash of the question text, so filtering, shuffling or appending rows never moves an id.
Splits are fixed by the same hash, so a problem is in hard_train or in hard_heldout whatever the order.
"""

from __future__ import annotations

import functools
import hashlib
import random
from pathlib import Path

from prefixrl.data.tasks.answers import gold_answer
from prefixrl.data.tasks.base import Problem
from prefixrl.io.errors import BadInput
from prefixrl.io.store import read_jsonl
from prefixrl.rollout.limits import check_text

SPLITS = ("hard_train", "hard_heldout")
LOCAL = (".jsonl", ".json", ".parquet", ".csv")


def _hub_rows(name: str, subset: str | None, split: str | None) -> list:
    import datasets

    try:
        rows = datasets.load_dataset(name, subset, split=split or "train")
    except Exception as e:  # noqa: BLE001 - offline and not cached, no such dataset or split: the user's input
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise BadInput(f"{name}: not a local file or folder, and the Hub dataset could not be loaded "
                       f"(HF_HUB_OFFLINE and the local cache apply): {first}") from None
    return list(rows)


def _folder_rows(p: Path, split: str | None) -> list:
    import datasets

    try:
        rows = datasets.load_from_disk(str(p))
    except Exception as e:  # noqa: BLE001
        raise BadInput(f"{p}: not a datasets folder saved with save_to_disk ({type(e).__name__})") from None
    if isinstance(rows, datasets.DatasetDict):
        if split is not None and split not in rows:
            raise BadInput(f"{p}: no split {split!r}; it has {', '.join(rows)}")
        rows = rows[split or ("train" if "train" in rows else next(iter(rows)))]
    return _numbered(rows)


def _numbered(rows) -> list[tuple[str, object]]:
    return [(f"row {i}", row) for i, row in enumerate(rows)]


def _file_rows(p: Path) -> list[tuple[str, object]]:
    if not p.is_file():
        raise BadInput(f"{p}: no such file")
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return _numbered(pq.read_table(p).to_pylist())
        except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input error
            raise BadInput(f"{p}: not a readable Parquet file ({e})") from None
    if p.suffix == ".csv":
        import csv

        with p.open(newline="", encoding="utf-8") as f:
            return _numbered(csv.DictReader(f))
    if p.suffix == ".json":
        import json

        text = p.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as e:
                raise BadInput(f"{p}: not valid JSON ({e})") from None
            return _numbered(rows)
    return read_jsonl(p)  # (where, row): "line N", as an editor numbers a JSONL file


def load_rows(source: str, subset: str | None = None, split: str | None = None) -> list[tuple[str, object]]:
    """(where, row) per row of a local file or folder, or of a Hub dataset when `source` is neither; `where`
    is how an error names it: "line N" in a JSONL file (from 1, blank lines counted), else "row i" (from 0)."""
    p = Path(source)
    if p.is_dir():
        return _folder_rows(p, split)
    if p.suffix in LOCAL:
        return _file_rows(p)
    if p.exists():
        raise BadInput(f"{p}: problems must be {', '.join(LOCAL)}, a datasets folder or a Hub id")
    return _numbered(_hub_rows(source, subset, split))


def get_field(row, path: str):
    """The value at a dotted path (`reward_model.ground_truth`, `prompt.0.content`), or KeyError."""
    value = row
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, (list, tuple)) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(path)
    return value


def question_text(value, where: str) -> str:
    """A question field's text: a string, or the last user turn of a chat-message list."""
    if isinstance(value, list):
        if not all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
            raise BadInput(f"{where}: expected a string or a list of chat messages with role and content")
        users = [m for m in value if m["role"] == "user"]
        if not users:
            raise BadInput(f"{where}: the message list has no user turn")
        value = users[-1]["content"]
    return _text(value, where)


@functools.lru_cache(maxsize=8)
def dataset_system(source: str, question_field: str, subset: str | None = None, split: str | None = None) -> str | None:
    """The system turn of a dataset whose questions are chat-message lists, or None when no row has one. It
    becomes the rendering's system prompt, which is one per run (stored and checked with the rendering from
    collection to training), so every row must carry the same one: rows that differ are refused."""
    seen: dict[str | None, str] = {}
    for i, row in load_rows(source, subset, split):
        try:
            value = get_field(row, question_field) if isinstance(row, dict) else None
        except KeyError:
            continue  # read_rows names the row
        if not isinstance(value, list):
            continue
        systems = [m.get("content") for m in value if isinstance(m, dict) and m.get("role") == "system"]
        if len(systems) > 1:
            raise BadInput(f"{source}: {i}: field {question_field}: {len(systems)} system turns; a question has one")
        seen.setdefault(systems[0] if systems else None, i)
        if len(seen) > 1:
            (a, j), (b, k) = list(seen.items())[:2]
            raise BadInput(f"{source}: {k}: field {question_field}: its system turn ({_short(b)}) differs from "
                           f"{j}'s ({_short(a)}); a run renders every question under one system prompt")
    system = next(iter(seen), None)
    if system is not None:
        _text(system, f"{source}: {seen[system]}: field {question_field}: the system turn")
    return system


def _short(text: str | None) -> str:
    return "none" if text is None else repr(text if len(text) <= 40 else text[:37] + "...")


def _text(value, where: str) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or str(value).strip() == "":
        raise BadInput(f"{where}: expected a non-empty string")
    check_text(str(value), where)  # before anything tokenizes it
    return str(value)


def content_id(question: str) -> str:
    return hashlib.sha256(question.encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=8)
def read_rows(source: str, question_field: str, answer_field: str, subset: str | None = None,
              split: str | None = None, id_field: str | None = None,
              answer_format: str | None = None) -> tuple[tuple[str, str, str], ...]:
    """(id, question, answer) per distinct problem, checked: file, row and field in every error. A row that
    repeats an earlier one exactly is kept once; the same id with another question or answer is an error.
    With `answer_format`, each answer must hold a reference answer in that format (`answers.gold_answer`)."""
    out = []
    for i, row in load_rows(source, subset, split):
        values = {}
        for name, path in (("question", question_field), ("answer", answer_field), ("id", id_field)):
            if path is None:
                continue
            try:
                values[name] = get_field(row, path) if isinstance(row, dict) else None
            except KeyError:
                raise BadInput(f"{source}: {i}: field {path}: missing") from None
        where = f"{source}: {i}: field"
        q = question_text(values["question"], f"{where} {question_field}")
        a = _text(values["answer"], f"{where} {answer_field}")
        if answer_format is not None:
            try:
                gold_answer(answer_format, a)
            except ValueError as e:
                raise BadInput(f"{where} {answer_field}: {e}") from None
        pid = _text(values["id"], f"{where} {id_field}") if id_field else content_id(q)
        out.append((i, pid, q, a))
    return distinct(out, str(source))


def raw_rows(task) -> dict[str, dict]:
    """A dataset task's rows as the dataset has them, by problem id (`task.name:<id>`), first occurrence."""
    out = {}
    for i, row in load_rows(task.path, task.subset, task.dataset_split):
        if not isinstance(row, dict):
            continue
        try:
            pid = (_text(get_field(row, task.id_field), f"{task.path}: {i}: field {task.id_field}") if task.id_field
                   else content_id(question_text(get_field(row, task.question_field), f"{task.path}: {i}")))
        except KeyError:
            continue
        out.setdefault(f"{task.name}:{pid}", row)
    return out


def distinct(rows: list[tuple[str, str, str, str]], source: str) -> tuple[tuple[str, str, str], ...]:
    """(id, question, answer) of (where, id, question, answer) rows, each id once: an exact repeat is kept once
    (DAPO-Math-17k repeats its problems), the same id with another question or answer is an error naming both."""
    out, seen = [], {}
    for i, pid, q, a in rows:
        if pid in seen:
            j, q0, a0 = seen[pid]
            if (q0, a0) != (q, a):
                raise BadInput(f"{source}: {i}: id {pid!r} repeats {j} with another question or answer")
            continue
        seen[pid] = (i, q, a)
        out.append((pid, q, a))
    if not out:
        raise BadInput(f"{source}: no problems")
    return tuple(out)


def split_of(question: str, heldout_share: float) -> str:
    h = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16) / 16**8
    return "hard_heldout" if h < heldout_share else "hard_train"


def file_problems(task_name: str, rows, split: str, n: int | None, seed: int, heldout_share: float) -> list[Problem]:
    """`n` problems of `split` (None: all of them), a seeded sample; rows are (id, question, answer)."""
    if split not in SPLITS:
        raise BadInput(f"task {task_name} has splits {', '.join(SPLITS)}, not {split!r}")
    pool = [Problem(f"{task_name}:{pid}", split, q, a) for pid, q, a in rows if split_of(q, heldout_share) == split]
    random.Random(f"{task_name}:{split}:{seed}").shuffle(pool)
    return pool if n is None else pool[:n]
