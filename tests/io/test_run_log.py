"""A run's log is sealed like its result: resuming keeps exactly the records its checkpoint saw, or refuses."""

import hashlib
import json

import pytest

from prefixrl.io import run_state
from prefixrl.io.errors import BadInput


def lines(*steps):
    return "".join(json.dumps({"kind": "step", "step": s, "reward_unprefixed": 0.0}) + "\n" for s in steps)


def test_resume_keeps_the_checkpoints_records_and_drops_the_later_ones(tmp_path):
    log = tmp_path / "metrics.jsonl"
    seen = hashlib.sha256(lines(0, 1, 2).encode()).hexdigest()  # what a checkpoint at step 2 stored
    log.write_text(lines(0, 1, 2, 3) + '{"kind": "st')  # a later step, and a line cut off by the kill
    run_state.truncate_log(log, 2, seen)
    assert log.read_text() == lines(0, 1, 2)


def test_a_log_edited_before_its_checkpoint_is_refused_and_left_as_it_is(tmp_path):
    log = tmp_path / "metrics.jsonl"
    seen = hashlib.sha256(lines(0, 1, 2).encode()).hexdigest()
    edited = lines(0, 1, 2, 3).replace('"reward_unprefixed": 0.0}', '"reward_unprefixed": 1.0}', 1)
    log.write_text(edited)
    with pytest.raises(BadInput, match="up to step 2 differ from those its checkpoint saw"):
        run_state.truncate_log(log, 2, seen)
    assert log.read_text() == edited  # nothing written: the user decides what to do with it
    run_state.truncate_log(log, 2, None)  # a checkpoint of an older prefixrl stored no digest: kept as before
    assert log.read_text().count("\n") == 3


def test_a_log_is_read_as_it_was_sealed_and_bad_bytes_are_one_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(lines(0, 1))
    run_state.finish(tmp_path, {"settings": {}}, {"ledger": {}})
    assert [r["step"] for r in run_state.read_log(tmp_path)] == [0, 1]
    (tmp_path / "metrics.jsonl").write_bytes(lines(0, 1).encode() + b"\xff")
    with pytest.raises(BadInput, match="differs from the log its run sealed"):
        run_state.read_log(tmp_path)
    (tmp_path / "result.json").unlink()  # a run still going: nothing to check it against, but bytes are checked
    with pytest.raises(BadInput, match="not UTF-8"):
        run_state.read_log(tmp_path)
