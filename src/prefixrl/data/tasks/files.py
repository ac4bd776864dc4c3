"""Problems from local files: JSONL, Parquet, or a Hugging Face `datasets` folder (save_to_disk).

Exports of DAPO-Math-17k, OpenR1-Math and the like are rows with a question field and an answer field;
name them with `question_field` / `answer_field`. Nothing is fetched: a path that is not on disk is an
error. Splits are fixed by a hash of the question, so a problem is in hard_train or in hard_heldout
whatever the file order, and `n` problems of a split are a seeded sample of it.
"""

from __future__ import annotations

import functools
import hashlib
import random
from pathlib import Path

from prefixrl.data.tasks.base import Problem
from prefixrl.io.errors import BadInput
from prefixrl.io.store import read_jsonl

SPLITS = ("hard_train", "hard_heldout")


@functools.lru_cache(maxsize=8)
def read_rows(path: str, question_field: str, answer_field: str) -> tuple[tuple[str, str], ...]:
    """(question, answer) per row, checked: file, row and field in every error."""
    p = Path(path)
    if p.is_dir():
        try:
            import datasets
        except ImportError:
            raise BadInput(f"{p}: a folder of problems needs the `datasets` package (pip install datasets)") from None
        rows = datasets.load_from_disk(str(p))
        if isinstance(rows, datasets.DatasetDict):
            rows = rows[next(iter(rows))]
        raw = list(rows)
    elif p.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            raw = pq.read_table(p).to_pylist()
        except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input error
            raise BadInput(f"{p}: not a readable Parquet file ({e})") from None
    elif p.suffix in (".jsonl", ".json"):
        if not p.is_file():
            raise BadInput(f"{p}: no such file")
        raw = [row for _, row in read_jsonl(p)]
    else:
        raise BadInput(f"{p}: problems must be .jsonl, .parquet or a datasets folder")
    out = []
    for i, row in enumerate(raw):
        for field in (question_field, answer_field):
            v = row.get(field) if isinstance(row, dict) else None
            if not isinstance(v, (str, int, float)) or isinstance(v, bool) or str(v).strip() == "":
                raise BadInput(f"{p}: row {i}: field {field}: expected a non-empty string")
        out.append((str(row[question_field]), str(row[answer_field])))
    if not out:
        raise BadInput(f"{p}: no problems")
    return tuple(out)


def split_of(question: str, heldout_share: float) -> str:
    h = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16) / 16**8
    return "hard_heldout" if h < heldout_share else "hard_train"


def file_problems(task_name: str, rows, split: str, n: int, seed: int, heldout_share: float) -> list[Problem]:
    if split not in SPLITS:
        raise BadInput(f"task {task_name} has splits {', '.join(SPLITS)}, not {split!r}")
    pool = [Problem(f"{task_name}:{i}", split, q, a) for i, (q, a) in enumerate(rows) if split_of(q, heldout_share) == split]
    random.Random(f"{task_name}:{split}:{seed}").shuffle(pool)
    return pool[:n]
