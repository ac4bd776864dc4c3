"""Non-finite guard: a bad step changes nothing; repeated bad steps stop the run with a valid policy."""

import json

import pytest
import torch
from conftest import reference_traces

import prefixrl.rl.train as train_mod
from prefixrl.rl.settings import RLSettings
from prefixrl.rl.train import NonFiniteError, RunOptions, TrainingSet, guarded_update, train_rl


def test_guarded_update_skips_inf_loss_and_nan_gradients(tiny_model):
    opt = torch.optim.AdamW(tiny_model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in tiny_model.parameters()]
    out = tiny_model(input_ids=torch.tensor([[1, 4, 12]])).logits
    norm, applied = guarded_update(tiny_model, opt, out.sum() * float("inf"), 1.0)
    assert not applied and opt.state == {}
    out = tiny_model(input_ids=torch.tensor([[1, 4, 12]])).logits
    finite_loss_nan_grad = (out - out.detach()).sqrt().sum()  # = 0, but d√x/dx at 0 is inf → NaN gradient
    assert torch.isfinite(finite_loss_nan_grad)
    norm, applied = guarded_update(tiny_model, opt, finite_loss_nan_grad, 1.0)
    assert not applied and opt.state == {}
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_model.parameters()))
    out = tiny_model(input_ids=torch.tensor([[1, 4, 12]])).logits
    norm, applied = guarded_update(tiny_model, opt, out.logsumexp(-1).sum(), 1.0)
    assert applied and norm > 0
    assert not all(torch.equal(a, b) for a, b in zip(before, tiny_model.parameters()))


def test_run_stops_after_consecutive_nonfinite_steps(task, tok, tiny_model, tmp_path, monkeypatch):
    traces = reference_traces(task, tok, 4)  # luffy puts each trace in its group: every group has signal
    real = train_mod.weighted_pg_loss
    monkeypatch.setattr(train_mod, "weighted_pg_loss", lambda *a, **k: real(*a, **k) * float("inf"))
    before = [p.detach().clone() for p in tiny_model.parameters()]
    cfg = RLSettings(method="luffy", steps=50, prompts_per_step=4, samples_per_prompt=4, max_new_tokens=16,
                     eval_every=100, eval_problems=2, eval_samples=2, max_nonfinite_steps=3)
    with pytest.raises(NonFiniteError, match="3 consecutive steps"):
        train_rl(tiny_model, tok, TrainingSet(task, [t.problem for t in traces], [], traces), cfg, tmp_path,
                 RunOptions(progress=False))
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_model.parameters()))
    assert (tmp_path / "final" / "config.json").is_file()
    steps = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"step"' in l]
    assert any(s.get("skipped_nonfinite") for s in steps)
