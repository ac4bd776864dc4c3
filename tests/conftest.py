"""Shared fixtures: a tiny random-init Llama and the embedded tokenizer, built locally (no downloads)."""

import os

# Nothing is downloaded in tests: a Hub id resolves from the local cache or fails (tests/rollout/test_device.py).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch

from prefixrl.data.prompt import decode_response, encode_response, tokenizer_fingerprint
from prefixrl.data.tasks.chain import ChainTask
from prefixrl.data.traces import Trace
from prefixrl.embedded.tokenizer import build_tokenizer
from prefixrl.rollout.model import ModelShape, build_model

if "OMP_NUM_THREADS" not in os.environ:  # the suite runs as CI runs it (2 threads) unless told otherwise
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tok():
    return build_tokenizer()


@pytest.fixture
def tiny_model(tok):
    return build_model(tok, ModelShape(hidden=32, layers=1, heads=2, ffn=64, max_positions=128), seed=0)


@pytest.fixture(scope="session")
def task():
    return ChainTask(easy_max_steps=6, hard_steps=6)


def reference_traces(task, tok, n=6, seed=0, source="test"):
    """Correct traces from the task's reference solver, as if rejection sampling had found them."""
    out = []
    for p in task.problems("hard_train", n, seed=seed):
        ids = encode_response(tok, task.solution(p), eos=False)
        out.append(Trace(p.id, p.question, p.answer, decode_response(tok, ids), ids, tokenizer_fingerprint(tok),
                         source, 1.0, 1.0, 5, 123.0))
    return out


def pretrain_tiny(folder, steps=2, hard_steps=6, *extra):
    """A tiny base model folder through the real `prefixrl pretrain` CLI (prefixrl.json names the task).
    Uncalibrated unless `extra` says otherwise: a 2-step model cannot reach any regime target."""
    from prefixrl_lab.cli import main

    assert main(["pretrain", "--out", str(folder), "--steps", str(steps), "--hidden", "32", "--layers", "1",
                 "--heads", "2", "--ffn", "64", "--easy-max-steps", str(hard_steps), "--hard-steps", str(hard_steps), "--rare-steps", "0",
                 "--calibration", "none", *extra]) == 0
    return folder


@pytest.fixture(scope="session")
def _bases_made(tmp_path_factory):
    return tmp_path_factory.mktemp("bases")


@pytest.fixture
def shared_bases(monkeypatch, _bases_made):
    """Pretrain each base configuration once per test session: the bench smokes share bases (a 300-step base
    is most of a smoke's time), so a base another test already pretrained with exactly this configuration
    is copied in, as a user's copied base is reused (`holds_base`). The first test to need it runs the real
    pretraining and calibration; the copy is byte for byte that base, and a base too weak to calibrate
    still fails as it would."""
    import hashlib
    import json
    import shutil
    from dataclasses import replace

    from prefixrl.embedded import pretrain
    from prefixrl_lab import pipeline

    real = pretrain.ensure_pretrained

    def ensure_pretrained(cfg, progress=True):
        if pretrain.holds_base(cfg):
            return
        key = hashlib.sha256(json.dumps(pretrain.settings_record(cfg), sort_keys=True).encode()).hexdigest()[:16]
        made = _bases_made / key
        if not made.is_dir():
            real(replace(cfg, out=made), progress=progress)
        if cfg.out.exists():  # a stale base, replaced as ensure_pretrained replaces it
            shutil.rmtree(cfg.out)
        shutil.copytree(made, cfg.out)
        assert pretrain.holds_base(cfg)

    monkeypatch.setattr(pipeline, "ensure_pretrained", ensure_pretrained)  # every bench but perf pretrains through it
