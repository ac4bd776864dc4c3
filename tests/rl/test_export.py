"""`prefixrl export`: the training pool for TRL and verl, with prefix token ids kept exact."""

import pyarrow.parquet as pq
import pytest
from conftest import pretrain_tiny, reference_traces

from prefixrl.data.prefixes import cut_prefixes, save_prefixes
from prefixrl.data.prompt import render_prompt
from prefixrl_lab.cli import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tok):
    from prefixrl.data.tasks.chain import ChainTask

    d = tmp_path_factory.mktemp("export")
    pretrain_tiny(d / "base", steps=2, hard_steps=6)
    task = ChainTask(easy_max_steps=6, hard_steps=6)
    prefixes = cut_prefixes(reference_traces(task, tok, 8), task, tok)
    save_prefixes(d / "p.parquet", prefixes, tok)
    return d, prefixes


@pytest.mark.parametrize("fmt", ["trl", "verl"])
def test_export_pool_mix_and_exact_prefix_ids(setup, fmt, tok):
    d, prefixes = setup
    out = d / f"{fmt}.parquet"
    assert main(["export", "--format", fmt, "--model", str(d / "base"), "--prefixes", str(d / "p.parquet"),
                 "--out", str(out), "--problems", "16", "--mix", "0.75"]) == 0
    rows = pq.read_table(out).to_pylist()
    info = [r["extra_info"] if fmt == "verl" else r for r in rows]
    pre = [i for i in info if i["kind"] == "prefixed"]
    assert len(pre) == len(prefixes) == 24 and len(rows) - len(pre) == 8  # 3 prefixed : 1 unprefixed
    by_cut = {(p.problem_id, tuple(p.prefix_ids)) for p in prefixes}
    assert {(i["problem_id"], tuple(i["prefix_ids"])) for i in pre} == by_cut  # token-exact, every prefix once
    assert all(i["prefix_ids"] == [] and i["prefix_text"] == "" for i in info if i["kind"] == "unprefixed")
    r = rows[0]
    assert r["prompt"][0]["role"] == "user"
    # rendering the row's prompt and appending its ids gives exactly the prefixed prompt the trainer uses
    p = next(p for p in prefixes if list(p.prefix_ids) == pre[0]["prefix_ids"])
    assert tok.decode(p.prefix_ids) == pre[0]["prefix_text"]
    assert render_prompt(tok, p.question) + pre[0]["prefix_ids"] == render_prompt(tok, p.question) + list(p.prefix_ids)
    if fmt == "verl":
        assert set(r) == {"data_source", "prompt", "ability", "reward_model", "extra_info", "agent_name"}
        assert r["reward_model"]["style"] == "rule" and r["reward_model"]["ground_truth"]
        assert {x["agent_name"] for x in rows} == {"prefixrl_agent", "single_turn_agent"}
        assert all((x["agent_name"] == "prefixrl_agent") == bool(x["extra_info"]["prefix_ids"]) for x in rows)


def test_export_rejects_unknown_format(setup, capsys):
    d, _ = setup
    assert main(["export", "--format", "nemo", "--model", str(d / "base"), "--out", str(d / "x.parquet")]) == 2
    assert "unknown export format 'nemo'" in capsys.readouterr().err
    assert not (d / "x.parquet").exists()


@pytest.mark.parametrize("fmt", ["trl", "verl"])
def test_rows_over_the_engines_prompt_limit_are_dropped_and_counted(setup, fmt, tok, capsys):
    """--max-prompt-tokens: what the engine would refuse mid-run is left out here, with a count, and what
    is written fits; the printed max_prompt_tokens is the longest row written."""
    d, prefixes = setup
    kept_all = d / f"all-{fmt}.parquet"
    assert main(["export", "--format", fmt, "--model", str(d / "base"), "--prefixes", str(d / "p.parquet"),
                 "--out", str(kept_all), "--problems", "16"]) == 0
    longest = int(capsys.readouterr().out.split("max_prompt_tokens ")[1].split()[0])
    lengths = sorted(len(render_prompt(tok, p.question)) + len(p.prefix_ids) for p in prefixes)
    assert longest == lengths[-1]
    cap = lengths[len(lengths) // 2]  # about half the prefixed rows are longer
    out = d / f"capped-{fmt}.parquet"
    assert main(["export", "--format", fmt, "--model", str(d / "base"), "--prefixes", str(d / "p.parquet"),
                 "--out", str(out), "--problems", "16", "--max-prompt-tokens", str(cap)]) == 0
    captured = capsys.readouterr()
    over = sum(n > cap for n in lengths)
    assert over > 0 and f"dropped {over} rows ({over} prefixed) longer than --max-prompt-tokens {cap}" in captured.err
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == pq.read_table(kept_all).num_rows - over
    for r in rows:
        info = r["extra_info"] if fmt == "verl" else r
        question = info["question"] if fmt == "verl" else r["prompt"][0]["content"]
        assert len(render_prompt(tok, question)) + len(info["prefix_ids"]) <= cap
    assert main(["export", "--format", fmt, "--model", str(d / "base"), "--prefixes", str(d / "p.parquet"),
                 "--out", str(d / "none.parquet"), "--problems", "16", "--max-prompt-tokens", "1"]) == 2
    assert "nothing to export" in capsys.readouterr().err and not (d / "none.parquet").exists()


@pytest.mark.parametrize("fmt", ["trl", "verl"])
def test_every_row_says_where_its_cut_lies_and_a_ladder_export_holds_every_rung(setup, fmt, tok):
    """What a loop outside the trainer needs to adapt cuts per problem: each row's cut and its trace's
    length; with --ladder-rungs, each traced problem's whole ladder (the cuts `--prefix-schedule adaptive`
    steps along), token-exact and answer-free, and one plain row per problem without a trace."""
    from prefixrl.data.tasks.chain import ChainTask
    from prefixrl.data.traces import save_traces
    from prefixrl.rl.pool import ladder_of

    d, prefixes = setup
    task = ChainTask(easy_max_steps=6, hard_steps=6)
    paper = d / f"cuts-{fmt}.parquet"
    assert main(["export", "--format", fmt, "--model", str(d / "base"), "--prefixes", str(d / "p.parquet"),
                 "--out", str(paper), "--problems", "16"]) == 0
    info = [r["extra_info"] if fmt == "verl" else r for r in pq.read_table(paper).to_pylist()]
    by_ids = {(p.problem_id, tuple(p.prefix_ids)): p for p in prefixes}
    for i in info:
        if i["kind"] == "prefixed":
            p = by_ids[(i["problem_id"], tuple(i["prefix_ids"]))]
            assert (i["cut"], i["trace_tokens"]) == (p.cut, p.trace_len) and 0 < i["cut"] < i["trace_tokens"]
        else:
            assert (i["cut"], i["trace_tokens"]) == (0, 0)

    traces = reference_traces(task, tok, 8)[:5]  # 5 of the 8 problems have a trace
    save_traces(d / f"t-{fmt}.parquet", traces)
    ladder = d / f"ladder-{fmt}.parquet"
    assert main(["export", "--format", fmt, "--model", str(d / "base"), "--traces", str(d / f"t-{fmt}.parquet"),
                 "--ladder-rungs", "4", "--out", str(ladder), "--problems", "8"]) == 0
    info = [r["extra_info"] if fmt == "verl" else r for r in pq.read_table(ladder).to_pylist()]
    for t in traces:
        rows = [i for i in info if i["problem_id"] == t.problem_id]
        assert [i["cut"] for i in rows] == ladder_of(t, task, tok, 4).cuts  # no prefix first, then rising
        assert len(rows) >= 3 and all(i["trace_tokens"] == len(t.token_ids) for i in rows)
        for i in rows:
            assert i["prefix_ids"] == list(t.token_ids[: i["cut"]]) and task.extract_answer(i["prefix_text"]) is None
    untraced = [i for i in info if i["problem_id"] not in {t.problem_id for t in traces}]
    assert len(untraced) == 3 and all(i["cut"] == i["trace_tokens"] == 0 for i in untraced)
