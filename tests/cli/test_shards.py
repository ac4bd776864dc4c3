"""`collect --shard I/N` and `prefixrl merge` on the real CLI: the shards of a collection merge to the
unsharded collection, and what is not one collection's shards is refused in one line, nothing written.
(Trace for trace, on a base that finds traces: tests/io/test_resume.py, slow tier.)"""

import pytest
from conftest import pretrain_tiny
from test_bad_input import one_line_error

from prefixrl.data.traces import TRACE_SCHEMA, save_traces
from prefixrl.io.store import read_sealed_json, read_store
from prefixrl_lab.cli import main


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """An unsharded collection of 5 problems and its 2 shards, one problem per request (so every forward
    pass has the same shapes in both: the comparison hinges on no float rounding)."""
    d = tmp_path_factory.mktemp("shards")
    pretrain_tiny(d / "base", steps=5, hard_steps=6)
    for name, extra in (("all", []), ("s0", ["--shard", "0/2"]), ("s1", ["--shard", "1/2"]),
                        ("other", ["--shard", "1/2", "--seed", "1"])):
        assert main(collect(d, d / f"{name}.parquet", *extra)) == 0
    return d


def collect(d, out, *extra) -> list[str]:
    return ["collect", "--model", str(d / "base"), "--problems", "5", "--cap", "4", "--per-round", "2",
            "--chunk-size", "1", "--min-yield", "0", "--out", str(out), *extra]


def test_shards_merge_to_the_unsharded_collection(stores, tmp_path):
    out = tmp_path / "merged.parquet"
    assert main(["merge", str(stores / "s1.parquet"), str(stores / "s0.parquet"), "--out", str(out)]) == 0
    rows, meta = read_store(out, TRACE_SCHEMA)
    assert (rows, meta) == read_store(stores / "all.parquet", TRACE_SCHEMA)
    state = meta["collection"]
    # every problem's attempts are recorded, in the selection's order: shard 0 has problems 0, 2, 4
    assert list(state["samples"]) == [f"hard_train-{i:05d}" for i in range(5)] and set(state["samples"].values()) == {4}
    assert read_store(stores / "s0.parquet", TRACE_SCHEMA)[1]["collection"]["samples"].keys() == {
        "hard_train-00000", "hard_train-00002", "hard_train-00004"}
    summary = read_sealed_json(out.with_suffix(".json"))
    assert summary["samples"] == 20 and summary["ledger"] == read_sealed_json(stores / "all.json")["ledger"]


@pytest.mark.parametrize("shards,needles", [
    (["s0"], ["shard 1/2 is missing", "all 2 shards"]),
    (["s0", "s0", "s1"], ["s0.parquet: shard 0/2 is given twice"]),
    (["s0", "other"], ["other.parquet: its seed differ from", "shards of different collections"]),
    (["s0", "all"], ["all.parquet: not a shard of a sampled collection"]),
])
def test_what_is_not_one_collections_shards_is_refused(stores, tmp_path, capsys, shards, needles):
    out = tmp_path / "merged.parquet"
    assert main(["merge", *[str(stores / f"{s}.parquet") for s in shards], "--out", str(out)]) == 2
    one_line_error(capsys, *needles)
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_an_unfinished_shard_is_refused(stores, tmp_path, capsys):
    rows, meta = read_store(stores / "s1.parquet", TRACE_SCHEMA)
    meta["collection"]["finished"] = False  # as a killed shard leaves its store
    save_traces(tmp_path / "s1.parquet", [], meta)
    assert main(["merge", str(stores / "s0.parquet"), str(tmp_path / "s1.parquet"), "--out",
                 str(tmp_path / "m.parquet")]) == 2
    one_line_error(capsys, "shard 1/2 is not finished", "--resume")


def test_an_existing_output_is_never_overwritten(stores, tmp_path, capsys):
    out = tmp_path / "merged.parquet"
    out.write_text("mine")
    assert main(["merge", str(stores / "s0.parquet"), str(stores / "s1.parquet"), "--out", str(out)]) == 2
    one_line_error(capsys, "already exists")
    assert out.read_text() == "mine"


@pytest.mark.parametrize("extra,needle", [
    (["--shard", "2/2"], "shard must be I/N with 0 <= I < N"),
    (["--shard", "1"], "shard must be I/N"),
    (["--shard", "5/6"], "shard 5 of 6 holds none of the 5 problems"),
    (["--chunk-size", "0"], "chunk_size must be >= 1"),
])
def test_a_bad_shard_or_chunk_is_one_line(stores, tmp_path, capsys, extra, needle):
    out = tmp_path / "t.parquet"
    assert main(collect(stores, out, *extra)) == 2
    one_line_error(capsys, needle)
    assert not out.exists()


@pytest.mark.skipif(__import__("importlib.util").util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_a_missing_vllm_is_one_line(stores, tmp_path, capsys):
    assert main(collect(stores, tmp_path / "t.parquet", "--engine", "vllm")) == 2
    one_line_error(capsys, "--engine vllm: vLLM is not installed in this environment")
    assert not (tmp_path / "t.parquet").exists()
