"""`--device` and `--model`: the loop's tensors live where the model does, and a model is a folder or a
Hugging Face Hub id.

Placement is checked on the meta device, which stands in for an accelerator on a CPU-only machine: an op
that mixes a meta tensor with a CPU tensor raises, so every tensor the update builds must be made where
the model is. The Hub path is checked against a real Hub cache layout with HF_HUB_OFFLINE=1 (nothing is
downloaded)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.fx.experimental._config
from conftest import pretrain_tiny, reference_traces

from prefixrl.data.prefixes import PrefixedPrompt
from prefixrl.data.prompt import render_prompt
from prefixrl.io.errors import BadInput
from prefixrl.rl import train
from prefixrl.rl.losses import token_logprobs
from prefixrl.rl.mask import make_batch
from prefixrl.rl.methods import METHODS
from prefixrl.rl.offpolicy import token_weights
from prefixrl.rl.settings import RLSettings
from prefixrl.rl.sft import Examples, micro_losses, nll_and_entropy
from prefixrl.rollout import device
from prefixrl_lab.cli import main


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return pretrain_tiny(tmp_path_factory.mktemp("device") / "base", steps=2, hard_steps=6)


def test_resolve_names_the_device_or_says_why_not():
    assert device.resolve("cpu") == torch.device("cpu")
    assert device.resolve("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "gpu", "cuda:x", ""):
        with pytest.raises(BadInput, match="unknown device"):
            device.resolve(bad)
    if not torch.cuda.is_available():
        for spec in ("cuda", "cuda:0", "cuda:3"):
            with pytest.raises(BadInput, match="no CUDA GPU is visible"):
                device.resolve(spec)


def test_the_update_builds_every_tensor_on_the_models_device(tiny_model, tok, task, monkeypatch):
    """One RL update's micro-batch losses, for an on-policy method and both off-policy ones, with the
    model on the meta device: batches, trained-token mask, advantages and weights all follow it."""
    # meta tensors carry no values, so a boolean index cannot know its count; "every element selected"
    # keeps the shapes consistent, which is all a placement check needs
    monkeypatch.setattr(torch.fx.experimental._config, "meta_nonzero_assume_all_nonzero", True)
    model = tiny_model.to("meta")
    traces = reference_traces(task, tok, n=2)
    context = [render_prompt(tok, t.question) for t in traces]
    trained = [list(t.token_ids) + [tok.eos_token_id] for t in traces]
    losses = []
    monkeypatch.setattr(train, "guarded_update", lambda m, o, parts, clip: (losses.extend(parts), (0.0, True))[1])
    cfg = RLSettings(max_new_tokens=16, micro_batch_tokens=20)  # one row per micro-batch: several of them
    for name in ("prefixrl", "offpolicy", "luffy"):
        method = METHODS[name]
        row_traces = traces if method.offpolicy else [None, None]
        logp_base = {t.problem_id: [0.0] * (len(t.token_ids) + 1) for t in traces}
        learner = train.Learner(model, None, method, train.autocast("fp32", torch.device("meta")),
                                logp_base=logp_base)
        losses.clear()
        groups = [train.Group(PrefixedPrompt.of(tok, t.problem), [ids], [] if method.offpolicy else [[0.0] * len(ids)],
                              trace=row, advantages=torch.tensor([a]))
                  for t, ids, row, a in zip(traces, trained, row_traces, (1.0, -1.0))]
        train.update(learner, cfg, tok, groups)
        assert len(losses) == 2 and all(x.device.type == "meta" for x in losses), name

    batch = make_batch(context, trained, tok.pad_token_id, device.of(model))
    assert {batch.ids.device.type, batch.mask.device.type, batch.lengths.device.type} == {"meta"}
    logp, entropy = token_logprobs(model, batch)
    assert logp.device.type == entropy.device.type == "meta"
    w = token_weights(METHODS["offpolicy"], 2.0, 0.1, logp, batch.mask, traces, logp_base)
    assert w.device.type == "meta"
    assert all(x.device.type == "meta" for x in micro_losses(model, context, trained, tok.pad_token_id, 20))


def test_sft_and_exact_measurement_run_where_the_model_is(tiny_model, tok, task):
    """On the CPU (the one device every machine has), the host-side summaries accept a model-device batch."""
    from prefixrl.rl import exact
    from prefixrl.rollout.flops import Ledger

    traces = reference_traces(task, tok, n=3)
    nll, ent = nll_and_entropy(tiny_model, tok, Examples.of_traces(tok, traces), Ledger(), "eval/x")
    assert nll > 0 and ent > 0
    m = exact.measure(tiny_model, tok, task, task.problems("hard_train", 3, 0))
    assert 0 <= m["exact_pass@1"] <= 1


@pytest.mark.parametrize("spec", ["cpu", "auto"])
def test_train_runs_on_the_device_asked_for(base, tmp_path, spec):
    out = tmp_path / "run"
    assert main(["train", "--model", str(base), "--method", "rl", "--problems", "4", "--steps", "1",
                 "--prompts-per-step", "2", "--samples-per-prompt", "2", "--eval-problems", "2",
                 "--eval-samples", "2", "--device", spec, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["device"] == spec
    assert (out / "final" / "model.safetensors").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("command", ["train", "collect", "eval"])
def test_cuda_without_a_gpu_is_one_line_and_writes_nothing(base, tmp_path, capsys, command):
    out = tmp_path / "out"
    assert main([command, "--model", str(base), "--device", "cuda", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prefixrl: error:") and "\n" not in err and "--device cuda: no CUDA GPU" in err, err
    assert not out.exists()


def _hub_cache(tmp_path, base, repo="tiny-org/tiny-chain", weights=True):
    """A Hub cache as huggingface_hub writes it: models--org--name/{refs/main, snapshots/<commit>/...}."""
    root = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / ("0" * 40)
    shutil.copytree(base, snap, ignore=None if weights else shutil.ignore_patterns("*.safetensors"))
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("0" * 40)
    return tmp_path / "hub"


def _cli(args, hub, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "prefixrl_lab", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_hub_id_loads_from_the_hub_cache_offline(base, tmp_path):
    hub = _hub_cache(tmp_path, base)
    r = _cli(["eval", "--model", "tiny-org/tiny-chain", "--split", "hard_heldout", "--problems", "2", "--samples",
              "2", "--k", "1", "--out", "eval.json"], hub, tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "eval.json").read_text())
    assert res["problems"] == 2 and "exact_pass@1" in res  # the snapshot's prefixrl.json named the chain task
    missing = _cli(["eval", "--model", "tiny-org/not-cached"], hub, tmp_path)
    err = missing.stderr.strip()
    assert missing.returncode == 2 and "\n" not in err, err
    assert "tiny-org/not-cached: no model folder there" in err and "could not be loaded as a Hugging Face Hub id" in err


def test_token_id_stages_read_a_hub_snapshot_without_its_weights(base, tmp_path, tok, task):
    """prefixes and export need the tokenizer only: a snapshot that has no weight files is enough."""
    from prefixrl.data.traces import save_traces

    hub = _hub_cache(tmp_path, base, weights=False)
    save_traces(tmp_path / "traces.parquet", reference_traces(task, tok, n=4))
    r = _cli(["prefixes", "--model", "tiny-org/tiny-chain", "--traces", "traces.parquet", "--out", "p.parquet"],
             hub, tmp_path)
    assert r.returncode == 0, r.stderr
    r = _cli(["export", "--model", "tiny-org/tiny-chain", "--prefixes", "p.parquet", "--problems", "4",
              "--out", "rows.parquet"], hub, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "rows.parquet").is_file()


def test_a_missing_local_folder_is_not_looked_up_on_the_hub(tmp_path, capsys, monkeypatch):
    """A path whose first folder exists here (runs/base, the default) is a path, never a Hub id."""
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    for spec in (str(tmp_path / "runs" / "base"), "/nonexistent/model", "runs/base"):
        assert main(["eval", "--model", spec]) == 2
        err = capsys.readouterr().err
        assert "no model folder there" in err and "Hub id" not in err.split(";")[0], err
