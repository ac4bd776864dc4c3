"""The regime gates (docs/regimes.md) on hand-made measurements and logs, where the answer is known."""

import json

import pytest

from prefixrl_lab import gates
from prefixrl_lab.regime_map import predicted_separation


def test_knowledge_gate_tells_sampling_noise_from_missing_knowledge():
    noise = gates.knowledge({"exact_pass@1": 1e-3, "greedy_pass@1": 0.97, "problems": 256})  # the shared-skill chain
    assert not noise["ok"] and noise["ratio"] == pytest.approx(970)
    missing = gates.knowledge({"exact_pass@1": 1e-3, "greedy_pass@1": 0.0, "problems": 256})
    assert missing["ok"]
    lucky = gates.knowledge({"exact_pass@1": 1e-3, "greedy_pass@1": 1 / 64, "problems": 64})  # one problem by chance
    assert lucky["ok"]
    assert not gates.knowledge({"exact_pass@1": 1e-3, "greedy_pass@1": 3 / 64, "problems": 64})["ok"]


def _log(tmp_path, evals, rewards, samples=64):
    """metrics.jsonl of standard RL: evals [(step, flops, acc)], per-step unprefixed reward."""
    lines = [{"kind": "eval", "step": s, "flops": f, "train_acc_unprefixed": a} for s, f, a in evals]
    lines += [{"kind": "step", "step": i + 1, "reward_unprefixed": r, "samples_unprefixed": samples}
              for i, r in enumerate(rewards)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return tmp_path


def test_rl_starvation_counts_successes_before_escape_and_reads_accuracy_at_the_rs_cost(tmp_path):
    # 10 steps of 64 samples, 2 successes per step (reward 2/64); escape at step 10 after 20 successes
    run = _log(tmp_path, [(0, 0.0, 0.0), (5, 5e11, 0.02), (10, 1e12, 0.15)], [2 / 64] * 10)
    g = gates.rl_starvation(run, rs_flops=6e11, traces_bought=40)
    assert g["escaped_at_step"] == 10 and g["successes_before_escape"] == 20
    assert g["acc_at_rs_flops"] == 0.15  # the first evaluation at or past the rejection-sampling cost
    assert not g["ok"]  # it escaped with fewer successes than rejection sampling bought traces
    starved = gates.rl_starvation(run, rs_flops=4e11, traces_bought=10)
    assert starved["acc_at_rs_flops"] == 0.02 and starved["ok"]  # below 0.1 at that cost, needed 20 > 10
    never = gates.rl_starvation(_log(tmp_path, [(0, 0.0, 0.0), (10, 1e12, 0.01)], [0.0] * 10), 5e11, 40)
    assert not never["escaped"] and never["successes_before_escape"] == 0 and never["ok"]


def test_reachability_needs_both_the_yield_and_the_80_percent_prefix():
    assert gates.reachability(0.6, 0.25, 0.86)["ok"]
    assert not gates.reachability(0.2, 0.25, 0.86)["ok"]
    assert not gates.reachability(0.6, 0.25, 0.1)["ok"]


def test_theory_predicts_no_separation_without_unknown_steps_and_some_with_them():
    assert predicted_separation(0)["ratio"] == 1.0
    two = predicted_separation(2, seeds=2, budget=20_000)
    assert two["standard"] > 0 and two["prefixrl"] > 0 and two["ratio"] == two["standard"] / two["prefixrl"]


def test_transfer_is_reported_sampled_and_exact():
    from prefixrl_lab.reports.demo import gate_lines

    g = {"knowledge": gates.knowledge({"exact_pass@1": 1e-3, "greedy_pass@1": 0.0, "problems": 64}),
         "reachable": gates.reachability(0.6, 0.25, 0.86),
         "transfer": {"trained_before": 0.002, "trained_after": 0.004, "before": 0.0, "after": 0.002, "share": 1.0,
                      "exact": {"trained_before": 1e-3, "trained_after": 3e-3, "other_before": 1e-3,
                                "other_after": 1.5e-3, "share": 0.25}}}
    line = [x for x in gate_lines(g) if x.startswith("- transfer")][0]
    assert "the other half from 0.000 to 0.002 (share transferred: 1.00; reported, no threshold)" in line
    assert line.endswith("in exact pass@1, that half from 1.00e-03 to 3.00e-03 and the other from 1.00e-03 to "
                         "1.50e-03 (share 0.25)")
    del g["transfer"]["exact"]
    assert "exact" not in [x for x in gate_lines(g) if x.startswith("- transfer")][0]


def test_the_jump_gate_needs_both_the_floor_and_the_factor():
    assert gates.jump(0.3, 1e-3)["ok"]
    assert not gates.jump(0.19, 1e-4)["ok"]  # below the floor 0.2
    assert not gates.jump(0.3, 0.01)["ok"]  # only 30× unprefixed, not 50×


def test_the_reuse_gate_wants_copying_that_works_and_leaves_gradient_and_none_in_the_control():
    assert gates.reuse(0.5, control=False)["ok"]
    assert not gates.reuse(0.2, control=False)["ok"]  # copying barely works
    assert not gates.reuse(0.95, control=False)["ok"]  # copying always works: nothing left to learn there
    assert gates.reuse(-0.04, control=True)["ok"] and not gates.reuse(0.06, control=True)["ok"]
