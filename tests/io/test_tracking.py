"""Experiment tracking with the real libraries: metrics.jsonl always; TensorBoard and W&B (offline, no
network) on request, with the resolved config."""

import json

import pytest
from conftest import pretrain_tiny

from prefixrl_lab.cli import main


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("track")
    pretrain_tiny(d / "base", steps=2, hard_steps=4)
    return d


def train(base, out, *extra):
    return main(["train", "--model", str(base / "base"), "--method", "rl", "--problems", "4", "--steps", "3",
                 "--prompts-per-step", "2", "--samples-per-prompt", "2", "--eval-every", "2", "--eval-problems", "2",
                 "--out", str(out), *extra])


def test_tensorboard_and_wandb_offline_mirror_metrics_jsonl(base, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline is the default
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    assert train(base, out, "--log-to", "tensorboard", "wandb") == 0
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "step/entropy" in tags and "eval/train_acc_unprefixed" in tags
    logged = [e.value for e in acc.Scalars("step/entropy")]
    assert logged == pytest.approx([s["entropy"] for s in steps if s["kind"] == "step"], rel=1e-6)
    [config_tag] = [t for t in acc.Tags()["tensors"] if t.startswith("config")]  # the text plugin's storage
    assert b'"method": "rl"' in acc.Tensors(config_tag)[0].tensor_proto.string_val[0]
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))


def test_unknown_tracker_is_a_one_line_error(base, tmp_path, capsys):
    assert train(base, tmp_path / "run", "--log-to", "mlflow") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prefixrl: error: unknown tracker 'mlflow'") and "\n" not in err
    assert not (tmp_path / "run").exists()
