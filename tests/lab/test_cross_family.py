"""Prefix boundaries under two tokenizers, and traces that cross from one tokenizer to another."""

import pytest
from conftest import reference_traces

from prefixrl.data.prefixes import PrefixedPrompt, cut_prefixes
from prefixrl.data.prompt import decode_response, render_prompt, tokenizer_fingerprint
from prefixrl.data.traces import load_traces, save_traces, transfer_traces
from prefixrl.embedded.tokenizer import build_tokenizer
from prefixrl.io.errors import BadInput
from prefixrl.rollout.model import ModelShape, build_model


def _traces(task, tok, n=5):
    return reference_traces(task, tok, n, seed=2, source="qwen2-pairs")


def test_the_two_tokenizers_differ_but_agree_on_text():
    char, pairs = build_tokenizer("char"), build_tokenizer("pairs")
    text = "9 6 7 0 #0"
    assert tokenizer_fingerprint(char) != tokenizer_fingerprint(pairs)
    assert len(pairs.encode(text, add_special_tokens=False)) < len(char.encode(text, add_special_tokens=False))
    assert decode_response(pairs, pairs.encode(text, add_special_tokens=False)) == text
    with pytest.raises(ValueError):
        build_tokenizer("nope")


@pytest.mark.parametrize("kind", ["char", "pairs"])
@pytest.mark.parametrize("boundary", ["token", "whitespace"])
def test_prefix_boundaries_under_each_tokenizer(task, kind, boundary):
    tok = build_tokenizer(kind)
    traces = _traces(task, tok)
    for p in cut_prefixes(traces, task, tok, low=0.0, high=1.0, seed=3, boundary=boundary):
        t = next(t for t in traces if t.problem_id == p.problem_id)
        assert p.prefix_ids == t.token_ids[: p.cut]
        text = decode_response(tok, p.prefix_ids)
        assert task.extract_answer(text) is None and "#" not in text
        assert PrefixedPrompt.of(tok, p.problem, p.prefix_ids).ids == render_prompt(tok, p.question) + p.prefix_ids
        if boundary == "whitespace" and p.cut:
            assert text.endswith(" ") and tok.encode(text, add_special_tokens=False) == p.prefix_ids


def test_cross_tokenizer_path(task, tmp_path):
    char, pairs = build_tokenizer("char"), build_tokenizer("pairs")
    foreign = _traces(task, pairs)
    save_traces(tmp_path / "qwen.parquet", foreign)
    with pytest.raises(BadInput, match="field tokenizer"):  # ids of another tokenizer are never used as ids
        load_traces(tmp_path / "qwen.parquet", task, char)
    moved, rejected = transfer_traces(tmp_path / "qwen.parquet", task, char, pairs)
    assert rejected == [] and len(moved) == len(foreign)
    for src, t in zip(foreign, moved):
        assert t.response == src.response and t.token_ids == char.encode(src.response, add_special_tokens=False)
        assert t.tokenizer == tokenizer_fingerprint(char) and t.samples == src.samples and "via text" in t.source
    save_traces(tmp_path / "moved.parquet", moved)
    assert load_traces(tmp_path / "moved.parquet", task, char)[0] == moved  # now native to the policy
    for p in cut_prefixes(moved, task, char, seed=0, boundary="whitespace"):
        assert decode_response(char, p.prefix_ids).endswith(" ") or p.cut == 0


def test_second_family_model_is_a_real_qwen2(tok):
    pairs = build_tokenizer("pairs")
    m = build_model(pairs, ModelShape(hidden=32, layers=1, heads=2, ffn=64), arch="qwen2")
    assert type(m).__name__ == "Qwen2ForCausalLM" and m.config.vocab_size == len(pairs)
    with pytest.raises(ValueError, match="unknown arch"):
        build_model(tok, ModelShape(hidden=32, layers=1, heads=2, ffn=64), arch="gpt9")


def test_saved_tokenizers_reload_exactly(tmp_path, tok):
    """Both embedded tokenizers survive save_pretrained → load next to a Llama and a Qwen2 config."""
    from prefixrl.rollout.model import load

    for kind, arch in (("char", "llama"), ("pairs", "qwen2")):
        t = build_tokenizer(kind)
        m = build_model(t, ModelShape(hidden=32, layers=1, heads=2, ffn=64), arch=arch)
        m.save_pretrained(tmp_path / kind)
        t.save_pretrained(tmp_path / kind)
        _, loaded = load(tmp_path / kind)
        text = "7 +4-3..\n9 6 #6"
        assert loaded.encode(text, add_special_tokens=False) == t.encode(text, add_special_tokens=False)
        assert tokenizer_fingerprint(loaded) == tokenizer_fingerprint(t)
