import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import reference_traces
from hypothesis import given, settings
from hypothesis import strategies as st

from prefixrl.data.collect import import_traces, rejection_sample
from prefixrl.data.prefixes import PREFIX_SCHEMA, PrefixedPrompt, cut_prefixes, load_prefixes, save_prefixes
from prefixrl.data.prompt import decode_response, encode_response, render_prompt, tokenizer_fingerprint
from prefixrl.data.traces import Trace, load_traces, save_traces
from prefixrl.io.errors import BadInput
from prefixrl.io.store import sealed, write_records
from prefixrl.rollout.engine import Sampler, SamplingParams


def _traces(task, tok, n=6):
    return reference_traces(task, tok, n)


def test_store_round_trip_and_reverification(task, tok, tmp_path):
    traces = _traces(task, tok)
    bad_ids = encode_response(tok, "1 2 3 4 5 6 #6", eos=False)
    traces[2] = Trace(**{**traces[2].__dict__, "token_ids": bad_ids, "response": decode_response(tok, bad_ids)})
    save_traces(tmp_path / "t.parquet", traces)
    loaded, rejected = load_traces(tmp_path / "t.parquet", task, tok)
    assert [t.problem_id for t in loaded] == [t.problem_id for i, t in enumerate(traces) if i != 2]
    assert loaded[0] == traces[0]
    assert len(rejected) == 1 and "row 2" in rejected[0] and "re-verification" in rejected[0]


def test_trace_from_another_tokenizer_is_an_error(task, tok, tmp_path):
    traces = _traces(task, tok, 2)
    traces[1] = Trace(**{**traces[1].__dict__, "tokenizer": "0123456789abcdef"})
    save_traces(tmp_path / "t.parquet", traces)
    with pytest.raises(BadInput, match=r"t.parquet: row 1: field tokenizer"):
        load_traces(tmp_path / "t.parquet", task, tok)


def test_missing_field_and_unreadable_file(task, tok, tmp_path):
    pq.write_table(sealed(pa.table({"problem_id": ["a"]})), tmp_path / "x.parquet")
    with pytest.raises(BadInput, match="missing field"):
        load_traces(tmp_path / "x.parquet", task, tok)
    (tmp_path / "y.parquet").write_text("not parquet")
    with pytest.raises(BadInput, match="not a readable Parquet"):
        load_traces(tmp_path / "y.parquet", task, tok)


def test_prefixed_prompt_is_problem_ids_plus_prefix_ids(task, tok):
    for pre in cut_prefixes(_traces(task, tok), task, tok, seed=0):
        prompt = PrefixedPrompt.of(tok, pre.problem, pre.prefix_ids)
        head = render_prompt(tok, pre.question)
        assert prompt.ids == head + pre.prefix_ids and prompt.prefixed  # token-exact: never re-tokenised
        assert head[-1] == tok.convert_tokens_to_ids("<|assistant|>")  # the prefix opens the response
        # the verifier scores prefix + completion, decoded together
        rest = encode_response(tok, task.solution(pre.problem), eos=False)[pre.cut :]
        assert prompt.response(tok, rest) == task.solution(pre.problem)


def test_paper_rule_three_cuts_in_band_fixed_by_seed(task, tok):
    traces = _traces(task, tok)
    a = cut_prefixes(traces, task, tok, seed=5)
    assert len(a) == 3 * len(traces)
    assert a == cut_prefixes(traces, task, tok, seed=5)
    assert a != cut_prefixes(traces, task, tok, seed=6)
    assert cut_prefixes(list(reversed(traces)), task, tok, seed=5)[:3] == [p for p in a if p.problem_id == traces[-1].problem_id]
    for p in a:
        assert 0.4 <= p.fraction <= 0.8
        assert p.cut <= int(p.fraction * p.trace_len)
        t = next(t for t in traces if t.problem_id == p.problem_id)
        assert p.prefix_ids == t.token_ids[: p.cut]


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.integers(0, 10_000))
def test_a_prefix_never_holds_the_final_answer(task, tok, a, b, seed):
    low, high = min(a, b), max(a, b)
    for p in cut_prefixes(_traces(task, tok, 3), task, tok, low=low, high=high, seed=seed):
        text = decode_response(tok, p.prefix_ids)
        assert task.extract_answer(text) is None and "#" not in text


def test_prefix_file_checks(task, tok, tmp_path):
    pres = cut_prefixes(_traces(task, tok, 2), task, tok, seed=0)
    save_prefixes(tmp_path / "p.parquet", pres, tok)
    assert load_prefixes(tmp_path / "p.parquet", task, tok) == pres
    rows = [dict(p.__dict__) for p in pres]
    rows[1]["cut"] = rows[1]["trace_len"] = len(rows[1]["prefix_ids"]) - 1
    ours = {"tokenizer": tokenizer_fingerprint(tok)}
    write_records(tmp_path / "bad.parquet", rows, PREFIX_SCHEMA, ours)
    with pytest.raises(BadInput, match=r"bad.parquet: row 1: field cut"):
        load_prefixes(tmp_path / "bad.parquet", task, tok)
    full = encode_response(tok, task.solution(pres[0].problem), eos=False)
    rows = [{**pres[0].__dict__, "prefix_ids": full, "cut": len(full), "trace_len": len(full)}]
    write_records(tmp_path / "ans.parquet", rows, PREFIX_SCHEMA, ours)
    with pytest.raises(BadInput, match="already contains the final answer"):
        load_prefixes(tmp_path / "ans.parquet", task, tok)


def test_import_reverifies_and_reports(task, tok, tmp_path):
    probs = task.problems("hard_train", 3, seed=0)
    lines = [{"problem_id": probs[0].id, "trace": task.solution(probs[0])},
             {"problem_id": probs[1].id, "trace": "0 0 0 0 0 0 #0"}]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    traces, rejected = import_traces(tmp_path / "t.jsonl", task, tok, probs)
    assert [t.problem_id for t in traces] == [probs[0].id] and len(rejected) == 1
    # a file that covers more problems than were selected: the others are skipped, and said so
    other = task.problems("hard_train", 5, seed=0)[3]
    (tmp_path / "w.jsonl").write_text("\n".join(json.dumps(x) for x in [
        lines[0], {"problem_id": other.id, "trace": task.solution(other)}]))
    traces, rejected = import_traces(tmp_path / "w.jsonl", task, tok, probs)
    assert [t.problem_id for t in traces] == [probs[0].id]
    assert rejected == [f"{tmp_path / 'w.jsonl'}: 1 row(s) for problems outside the 3 selected (--problems, "
                        f"--data-seed) skipped, the first at line 2 ({other.id!r})"]
    # a file with no row for any selected problem is the wrong file
    (tmp_path / "u.jsonl").write_text('{"problem_id": "nope", "trace": "1"}\n')
    with pytest.raises(BadInput, match=r"u.jsonl: line 1: field problem_id: no row is for one of the 3 selected"):
        import_traces(tmp_path / "u.jsonl", task, tok, probs)


def test_rejection_sampling_accounts_every_sample(task, tok, tiny_model):
    probs = task.problems("hard_train", 3, seed=0)
    eng = Sampler(tiny_model, tok.eos_token_id, tok.pad_token_id)
    col = rejection_sample(eng, tok, task, probs, SamplingParams(max_new_tokens=16), source="tiny",
                           cap=10, per_round=4, seed=0, progress=False)
    # an untrained model solves nothing: every problem draws exactly the cap, in rounds of 4, 4, 2
    assert col.samples == {p.id: 10 for p in probs} and col.traces == []
    assert sum(col.flops.values()) == pytest.approx(col.ledger.total())
    assert col.summary()["flops"] == pytest.approx(col.ledger.total())


def test_a_collection_is_saved_after_every_request_and_resumes_from_any_of_them(task, tok, tiny_model):
    """`chunk` problems per request, and the state handed over after each: a kill loses at most one request,
    and a collection resumed from any saved state ends as the uninterrupted one (samples, FLOPs, ledger)."""
    import copy

    probs = task.problems("hard_train", 5, seed=0)
    eng = Sampler(tiny_model, tok.eos_token_id, tok.pad_token_id)
    saved = []

    def run(resume_from=None, on_chunk=None):
        return rejection_sample(eng, tok, task, probs, SamplingParams(max_new_tokens=16), source="tiny", cap=4,
                                per_round=2, seed=0, chunk=2, progress=False, resume_from=resume_from,
                                on_chunk=on_chunk)

    full = run(on_chunk=lambda col, finished: saved.append((copy.deepcopy(col), finished)))
    # rounds of 2 samples, 2 problems per request: 3 requests a round, the round's last one holding 1 problem
    assert [list(col.samples.values()) for col, _ in saved] == [
        [2, 2, 0, 0, 0], [2, 2, 2, 2, 0], [2, 2, 2, 2, 2], [4, 4, 2, 2, 2], [4, 4, 4, 4, 2], [4, 4, 4, 4, 4]]
    assert [finished for _, finished in saved] == [False] * 5 + [True]
    for col, _ in saved[:-1]:
        resumed = run(resume_from=copy.deepcopy(col))
        assert (resumed.samples, resumed.flops, resumed.ledger.to_dict()) == (full.samples, full.flops,
                                                                               full.ledger.to_dict())
    with pytest.raises(BadInput, match="chunk must be >= 1"):
        rejection_sample(eng, tok, task, probs, SamplingParams(max_new_tokens=16), source="tiny", chunk=0)


def test_a_problems_draws_depend_on_its_id_and_attempt_not_on_its_place(task, tok, tiny_model):
    """Each request's stream is (seed, problem id, samples drawn before): the same problem, sent alone or
    second in another order, draws the same samples. Requests of one problem each, so every forward pass
    has the same shapes and the comparison hinges on no float rounding."""
    probs = task.problems("hard_train", 3, seed=0)
    eng = Sampler(tiny_model, tok.eos_token_id, tok.pad_token_id)

    def run(problems):
        return rejection_sample(eng, tok, task, problems, SamplingParams(max_new_tokens=16), source="tiny", cap=4,
                                per_round=2, seed=7, chunk=1, progress=False)

    # a problem's FLOPs are 2N x (its prompt + the tokens it decoded): they follow what it drew
    together, alone = run(probs), run(probs[2:])
    assert alone.flops[probs[2].id] == together.flops[probs[2].id]
    assert run(probs[::-1]).flops == together.flops


def test_a_prefix_store_names_its_tokenizer_and_another_tokenizer_is_refused(task, tok, tmp_path):
    """Ids from another tokenizer are valid ids that decode to garbage: the store's fingerprint must match."""
    from prefixrl.embedded.tokenizer import build_tokenizer

    pres = cut_prefixes(_traces(task, tok, 2), task, tok, seed=0)
    save_prefixes(tmp_path / "p.parquet", pres, tok)
    other = build_tokenizer("pairs")
    with pytest.raises(BadInput, match=rf"tokenizer {tokenizer_fingerprint(tok)}, the policy's is "
                                       rf"{tokenizer_fingerprint(other)}"):
        load_prefixes(tmp_path / "p.parquet", task, other)
    pq.write_table(sealed(pa.Table.from_pylist([dict(p.__dict__) for p in pres])), tmp_path / "bare.parquet")
    with pytest.raises(BadInput, match=r"bare.parquet: prefix ids are from tokenizer \(none recorded\)"):
        load_prefixes(tmp_path / "bare.parquet", task, tok)



def test_a_store_is_the_same_bytes_with_shallow_rows(task, tok, tmp_path):
    """`io.store.rows_of` replaced `dataclasses.asdict` (which deep-copied every token id) when saving: the
    file written is byte for byte the one the deep copies made."""
    from dataclasses import asdict

    from prefixrl.data.traces import TRACE_SCHEMA

    traces = _traces(task, tok)
    save_traces(tmp_path / "shallow.parquet", traces, {"collection": {"finished": True}})
    write_records(tmp_path / "deep.parquet", [asdict(t) for t in traces], TRACE_SCHEMA, {"collection": {"finished": True}})
    assert (tmp_path / "shallow.parquet").read_bytes() == (tmp_path / "deep.parquet").read_bytes()
