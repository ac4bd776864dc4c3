"""`prefixrl plot RUN…`: one PNG from runs' metrics.jsonl; bad logs are one line naming file and line."""

import json

from prefixrl_lab.cli import main


def write_run(folder, scale):
    folder.mkdir(parents=True)
    recs = [{"kind": "eval", "step": s, "flops": s * 1e9, "train_acc_unprefixed": scale * s / 40,
             "heldout_acc_unprefixed": scale * s / 50} for s in (0, 20, 40)]
    recs += [{"kind": "step", "step": s, "flops": s * 1e9, "reward_prefixed": 0.5, "reward_unprefixed": scale * 0.1}
             for s in range(1, 41)]
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return folder


def test_two_runs_in_one_png_and_bad_logs_in_one_line(tmp_path, capsys):
    a, b = write_run(tmp_path / "a", 1.0), write_run(tmp_path / "b", 0.5)
    out = tmp_path / "plot.png"
    assert main(["plot", str(a), str(b), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    before = out.read_bytes()
    assert main(["plot", str(a), "--out", str(out)]) == 2  # an existing picture is never replaced silently
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == before
    (b / "metrics.jsonl").write_text('{"kind": "eval", "step": 0, "flops": 0}\n{oops\n')
    assert main(["plot", str(a), str(b), "--out", str(tmp_path / "p2.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "metrics.jsonl: line 2: not JSON" in err
    assert not (tmp_path / "p2.png").exists()
    assert main(["plot", str(tmp_path / "none"), "--out", str(tmp_path / "p3.png")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_a_finished_runs_log_edited_afterwards_is_refused_in_one_line(tmp_path, capsys):
    """A finished run's result.json seals its log (`run_state.finish`): the figures read off it later (the
    curves here, the regime gates and the benches' mechanism figures elsewhere) never rest on an edited one."""
    from prefixrl.io import run_state

    run = write_run(tmp_path / "a", 1.0)
    run_state.finish(run, {"settings": {}}, {"ledger": {}})
    assert main(["plot", str(run), "--out", str(tmp_path / "ok.png")]) == 0
    log = run / "metrics.jsonl"
    log.write_text(log.read_text().replace('"reward_unprefixed": 0.1', '"reward_unprefixed": 0.9', 1))
    assert main(["plot", str(run), "--out", str(tmp_path / "edited.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "metrics.jsonl: differs from the log its run sealed" in err
    assert not (tmp_path / "edited.png").exists()
