"""`prefixrl bench last-word` (docs/last_word.md): the rules' pure parts exactly, and the bench end to end
at toy size."""

import json
import math
import runpy
from pathlib import Path

import pytest

from prefixrl.data.tasks.chain import ChainTask
from prefixrl_lab import comparison, pipeline
from prefixrl_lab.cli import main


def test_the_choice_is_the_best_validation_score_and_a_tie_goes_to_the_smaller_value():
    assert comparison.choose({1e-5: 0.1, 3e-5: 0.3, 1e-4: 0.2}) == 3e-5
    assert comparison.choose({1e-4: 0.3, 3e-5: 0.3, 1e-3: 0.1}) == 3e-5
    assert comparison.grid(1e-4) == pytest.approx([1e-5, 3e-5, 1e-4, 3e-4, 1e-3])  # as wide as SFT's grid


@pytest.mark.parametrize("p,o,words", [
    ([2.0, 1.5, 1.3], [1.0, 1.0, 1.0], "PrefixRL is ahead"),        # all > 1, geometric mean 1.56
    ([1.1, 1.1, 1.1], [1.0, 1.0, 1.0], "no clear order at 3 seeds"),  # all > 1 but geometric mean 1.1 < 1.25
    ([0.5, 0.7, 0.9], [1.0, 1.0, 1.0], "PrefixRL is behind"),        # all < 1, geometric mean 0.68
    ([0.9, 0.95, 0.85], [1.0, 1.0, 1.0], "no clear order at 3 seeds"),  # all < 1 but geometric mean 0.90 > 0.8
    ([2.0, 0.5, 3.0], [1.0, 1.0, 1.0], "no clear order at 3 seeds"),   # mixed
])
def test_the_verdict_uses_the_committed_words(p, o, words):
    v = comparison.verdict([{"exact": x} for x in p], [{"exact": x} for x in o])
    assert v["words"] == words
    assert v["geo_mean"] == pytest.approx(math.prod(a / b for a, b in zip(p, o)) ** (1 / 3))


def test_a_seed_where_a_method_scores_exactly_zero_never_favours_prefixrl():
    def words(p, o):
        return comparison.verdict([{"exact": x} for x in p], [{"exact": x} for x in o])

    assert words([0.0] * 3, [0.0] * 3)["words"] == "no clear order at 3 seeds"  # 0 ÷ 0 is no order, not a win
    assert words([0.0, 0.0, 0.0], [1e-3] * 3) == {"ratios": [0.0] * 3, "geo_mean": 0.0, "words": "PrefixRL is behind"}
    assert words([1e-3] * 3, [0.0, 2e-3, 2e-3])["words"] == "no clear order at 3 seeds"
    assert words([1e-3] * 3, [0.0, 5e-4, 5e-4]) == {"ratios": [None, 2.0, 2.0], "geo_mean": None,
                                                    "words": "PrefixRL is ahead"}


def test_validation_problems_are_of_another_data_seed_and_never_a_reported_or_training_problem():
    task = ChainTask(hard_steps=6, rare_steps=2, classes=1)
    train, held = task.problems("hard_train", 16, 0), task.problems("hard_heldout", 32, 0)
    val = comparison.validation_problems(task, 32, train + held)
    assert 0 < len(val) <= 32 and not {p.question for p in val} & {p.question for p in train + held}
    assert all(p.id.startswith("validation-") for p in val)
    # what was removed is exactly the overlap (a 6-step chain repeats across data seeds now and then)
    drawn = task.problems("hard_heldout", 32, 1)
    assert len(val) == sum(p.question not in {q.question for q in train + held} for p in drawn)


def test_the_mechanism_figures_count_correct_samples_of_both_kinds():
    steps = [{"reward_unprefixed": 0.5, "samples_unprefixed": 16, "reward_prefixed": 0.25, "zero_adv_groups": 0.5},
             {"reward_unprefixed": None, "samples_unprefixed": 0, "reward_prefixed": 1.0, "zero_adv_groups": 1.0}]
    from prefixrl.rl.settings import RLSettings

    s = pipeline.mechanism(steps, RLSettings(prompts_per_step=8, samples_per_prompt=8), 2e12)
    assert s["correct_samples"] == 0.5 * 16 + 0.25 * 48 + 64 and s["correct_per_tflop"] == s["correct_samples"] / 2
    assert s["signal_share"] == 0.25


@pytest.mark.slow
def test_last_word_bench_tunes_every_method_alike_and_reports_the_verdict(tmp_path, shared_bases, monkeypatch):
    """At toy size, with 2 candidates per grid and one depth (the committed grid has 5 and three depths):
    each method tuned at seed 100 on the validation set, SFT→RL and ReGFT at standard RL's chosen lr, the
    depths, the reported seed, the SFT probes, the verdict and the page."""
    monkeypatch.setattr(comparison, "grid", lambda centre: [centre, 3 * centre])
    monkeypatch.setattr(comparison, "DEPTHS", (1,))
    out = tmp_path / "docs"
    args = ["bench", "last-word", "--out", str(out), "--work", str(tmp_path / "w"), "--rare-steps", "2",
            "--class-axis", "1", "--seeds", "1", "--hard-steps", "6", "--teacher-accuracy", "0.9",
            "--pretrain-steps", "300", "--train-problems", "6", "--heldout-problems", "8", "--flops-budget", "5e9",
            "--collect-cap", "64", "--no-progress"]
    assert main(args) == 0
    res = json.loads((out / "last_word.json").read_text())
    s = res["settings"]["rare2-classes1"]
    assert set(s["tuning"]) == {"rl", "prefixrl", "sft-rl", "regft-rl", "sft-rl depth"}
    assert all(len(t["candidates"]) == 2 for k, t in s["tuning"].items() if k != "sft-rl depth")
    rl_lr = s["chosen"]["lr"]["rl"]
    assert rl_lr == comparison.choose({c["value"]: c["validation_exact"] for c in s["tuning"]["rl"]["candidates"]})
    assert s["tuning"]["sft-rl"]["fixed"] == {"lr": rl_lr, "sft_rule": "early-stop"}  # RL at standard RL's choice
    assert set(s["runs"]) == {"prefixrl", "rl", "sft-rl", "sft-rl-1ep", "regft-rl"}
    assert s["runs"]["sft-rl-1ep"][0]["sft"]["epochs"] == 1 and s["runs"]["sft-rl-1ep"][0]["probe"]["epochs"] == 1
    assert all(0 < r["exact"] <= 1 for rs in s["runs"].values() for r in rs)
    assert s["runs"]["regft-rl"][0]["sft"]["completions"]["sampled"] > 0
    assert set(s["verdict"]) == {"standard RL", f"SFT→RL ({s['chosen']['sft_depth']})", "ReGFT→RL"}
    assert {"knowledge", "reachable", "rl_starved"} <= set(s["gates"])
    page = (out / "last_word_results.md").read_text()
    assert "### The verdict (§6)" in page and "charged to no method" in page and "| ReGFT→RL |" in page
    # a rerun reuses every run: nothing is trained again
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "w").rglob("result.json")}
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "w").rglob("result.json")} == before
    # scripts/bench_status.py: one row per finished run, read off the records alone
    status = runpy.run_path(str(Path(__file__).parents[2] / "scripts" / "bench_status.py"))["rows"](tmp_path / "w")
    assert len(status) == len(list((tmp_path / "w").rglob("bench_record.json"))) == 9 + 5
    assert sum("(validation)" in r for r in status) == 9 and all(r.count("|") == 6 for r in status)
    # what bench/.gitignore keeps of a work folder is enough: a clone of it renders the same results, and
    # nothing is trained or rejection-sampled again
    kept = kept_by_bench_gitignore(tmp_path / "w", tmp_path / "clone")
    assert not list(kept.rglob("result.json")) and not list(kept.rglob("metrics.jsonl"))
    assert main([*args[:5], str(kept), *args[6:]]) == 0
    assert not list(kept.rglob("result.json"))  # no run was made again
    again = json.loads((out / "last_word.json").read_text())["settings"]["rare2-classes1"]
    assert {k: again[k] for k in ("chosen", "runs", "verdict", "gates", "tuning")} == \
        {k: s[k] for k in ("chosen", "runs", "verdict", "gates", "tuning")}
    # --reuse: the switch and its control at one class's chosen values. The gates are opened here (their
    # rules are tested in tests/lab/test_gates.py): a 300-step toy base need not learn to copy
    from prefixrl_lab import gates, reuse

    monkeypatch.setattr(reuse, "COPY_RATES", (0.9,))
    monkeypatch.setattr(reuse, "SHAPE", {"rare_steps": 1, "recurrences": 1, "classes": 1, "pretrain_steps": 300})
    monkeypatch.setattr(gates, "REUSE_BAND", (-1.0, 1.0))
    monkeypatch.setattr(gates, "CONTROL_MAX", 1.0)
    monkeypatch.setattr(gates, "JUMP_MIN", 0.0)
    monkeypatch.setattr(gates, "JUMP_FACTOR", 0.0)
    monkeypatch.setattr(gates, "knowledge", lambda m: {"greedy_pass@1": m["greedy_pass@1"], "exact_pass@1":
                                                       m["exact_pass@1"], "factor": 10.0, "ratio": None, "ok": True})
    monkeypatch.setattr(gates, "reachability", lambda y, lo, p80: {"expected_yield": y, "min_yield": lo,
                                                                   "prefix80_success": p80, "prefix80_min": 0.2, "ok": True})
    assert main(args + ["--reuse"]) == 0
    r = json.loads((out / "last_word.json").read_text())["reuse"]
    assert r["copy_rate"]["copy_rate"] == 0.9 and r["chosen"] == s["chosen"]
    assert set(r["settings"]) == {"switch", "control"}
    for name, got in r["settings"].items():
        assert {"jump", "reuse", "knowledge", "rl_starved"} <= set(got["gates"])
        assert got["gates"]["reuse"]["control"] == (name == "control")
        assert got["rare_steps"] == 1 and set(got["runs"]) >= {"prefixrl", "rl", "regft-rl"}
        assert all("strategy" in r for rs in got["runs"].values() for r in rs)
        assert all(0 < r["exact"] <= 1 for rs in got["runs"].values() for r in rs)
    page = (out / "last_word_results.md").read_text()
    assert "## The reuse setting (§4)" in page and "### The control" in page and "- jump:" in page
    assert page.count("chosen at one class: §4 reuses") == 2  # the switch's and control's depth is one class's
    # bench in-context in the same work folder: the same copy-rate choice and base, one class's lrs, the pair
    # gates opened as the reuse gates were (their rule: test_the_pair_is_the_first_that_meets_the_gates)
    from prefixrl_lab import in_context

    monkeypatch.setattr(in_context, "P_ALONE_MAX", 1.0)
    monkeypatch.setattr(in_context, "WITH_PREFIX_MIN", 0.0)
    monkeypatch.setattr(in_context, "STEPS", 3)
    # §4's copy-rate decision is read back, never taken again (the failed rates' bases need not be kept)
    monkeypatch.setattr(reuse, "choose_copy_rate", lambda cfg: pytest.fail("the copy rate was chosen again"))
    assert main(["bench", "in-context"] + args[2:]) == 0
    ic = json.loads((out / "in_context.json").read_text())
    assert ic["pair"]["gates"]["scanned"] == 1 and ic["lr"] == s["chosen"]["lr"]
    pre, plain = ic["runs"]["prefixrl"][0], ic["runs"]["rl"][0]
    assert pre["steps"] == 3 and plain["flops"] >= pre["flops"]  # standard RL spends at least PrefixRL's FLOPs
    assert all(0 < r[k] <= 1 for r in (pre, plain, ic["base"]) for k in ("p2", "p3", "p2_after_p3", "heldout"))
    assert "| PrefixRL, seed 0 |" in (out / "in_context.md").read_text()
    assert ic["copy_rate"] == r["copy_rate"] == json.loads((tmp_path / "w" / "reuse_copy_rate.json").read_text())["record"]


def test_the_copy_rate_is_the_first_whose_base_meets_the_reuse_gate(monkeypatch, tmp_path):
    """docs/last_word.md §4: 0.5, 0.7, 0.9 in order, stopping at the first that passes (bases stubbed here:
    the rule, not the pretraining, is under test; the bench test below pretrains real ones)."""
    from prefixrl_lab import reuse
    from prefixrl_lab.configs import BenchConfig

    margins = {0.5: 0.1, 0.7: 0.45, 0.9: 0.95}
    built = []

    def config(cfg, operands, c):
        built.append(c)
        return BenchConfig("last-word", copy_rate=c, work=tmp_path, pretrain_steps=1)

    monkeypatch.setattr(reuse, "setting_config", config)
    monkeypatch.setattr(reuse, "reuse_margin", lambda sub, task: margins[sub.copy_rate])
    monkeypatch.setattr(reuse, "deadlined", lambda task: __import__("contextlib").nullcontext(task))
    choice = reuse.choose_copy_rate(BenchConfig("last-word"))
    assert choice["copy_rate"] == 0.7 and built == [0.5, 0.7]  # 0.9 is never built
    assert [t["ok"] for t in choice["tried"]] == [False, True]
    margins[0.7] = 0.2
    assert reuse.choose_copy_rate(BenchConfig("last-word"))["copy_rate"] is None  # 0.95 leaves no gradient


def test_p3_is_the_start_of_p2_and_its_worked_steps_the_start_of_p2s_response():
    from prefixrl_lab.in_context import pair_of

    task = ChainTask(hard_steps=16, rare_steps=3, classes=1, recurrences=1)
    for p2 in task.problems("hard_train", 8, 0):
        p3, steps = pair_of(task, p2)
        assert p2.question.startswith(p3.question.rstrip(".")) and len(p3.question) == len(p2.question)
        assert task.solution(p2).startswith(steps) and steps.count(" ") == 11  # through the last first use
        assert task.solution(p3).startswith(steps.rstrip()) and task.verify(p3, task.solution(p3)).value == "correct"
        assert len(task.correct_responses(p3)) == 2 ** 3


def test_the_pair_is_the_first_that_meets_the_gates(monkeypatch):
    """docs/last_word.md §5: scanned in order; P2 and P3 alone at most 1e-2 and P2 after P3's steps at least
    0.2 (exact figures stubbed here: the rule is under test)."""
    import torch

    from prefixrl_lab import in_context

    task = ChainTask(hard_steps=16, rare_steps=3, classes=1, recurrences=1)
    cands = task.problems("hard_train", 4, 0)
    p3s = [in_context.pair_of(task, p)[0] for p in cands]
    alone = {p.question: x for p, x in zip(cands, [2e-2, 5e-3, 5e-3, 1e-3])}  # P2 alone: candidate 0 too likely
    alone.update({p.question: x for p, x in zip(p3s, [5e-3, 2e-2, 5e-3, 1e-3])})  # P3 alone: candidate 1 too likely
    after = [0.5, 0.5, 0.1, 0.3]  # candidate 2: the prefix does not lift P2 to 0.2

    class Forced:
        def pass1(self):
            return torch.tensor(after, dtype=torch.float64)

    monkeypatch.setattr(in_context.exact, "problem_pass1",
                        lambda m, t, task, ps: torch.tensor([alone[p.question] for p in ps], dtype=torch.float64))
    monkeypatch.setattr(in_context.exact, "teacher_force", lambda m, t, task, ps, prefixes: Forced())
    pair = in_context.find_pair(None, None, task, cands)
    assert pair["index"] == 3 and pair["gates"]["scanned"] == 4 and pair["p3"] == p3s[3]
    alone[p3s[1].question] = 1e-2  # at the threshold: it passes, and comes first
    assert in_context.find_pair(None, None, task, cands)["index"] == 1
    after[:] = [0.1] * 4
    assert in_context.find_pair(None, None, task, cands) is None


def test_the_pages_say_why_nothing_ran():
    """A copy rate no base meets, a control base out of the regime, no pair: each is said on the page."""
    from prefixrl_lab.reports import in_context as ic_page
    from prefixrl_lab.reports import last_word as lw_page

    cfg = {"flops_budget": 1e13, "train_problems": 64, "heldout_problems": 128, "seeds": 3}
    tried = [{"copy_rate": 0.5, "error": "calibration: peaks at 7.5e-04", "ok": False},
             {"copy_rate": 0.7, "pretrain_steps": 2000, "margin": 0.12, "ok": False}]
    none = {"settings": {}, "config": cfg, "torch_threads": 1,
            "reuse": {"copy_rate": {"tried": tried, "copy_rate": None}, "chosen": {}, "settings": {}}}
    page = "\n".join(lw_page.page(none))
    assert "| 0.5 | – | calibration: peaks at 7.5e-04 | fail |" in page and "| 0.7 | 2000 | 0.120 | fail |" in page
    assert "Chosen: –." in page
    control = {**none, "reuse": {"copy_rate": {"tried": tried[1:], "copy_rate": 0.9}, "chosen": {}, "settings": {},
                                 "gates": {"control": {"calibration": {"ok": False, "error": "too weak"}}}}}
    assert "- its base could not be calibrated: too weak" in "\n".join(lw_page.page(control))
    base = {"rules": {"scan": 256, "steps": 100, "alone_max": 1e-2, "with_prefix_min": 0.2}, "torch_threads": 1,
            "seconds": 60.0}
    assert "Nothing ran." in ic_page.page({**base, "copy_rate": {"tried": tried, "copy_rate": None}})[-1]
    assert "No pair among the first 256" in ic_page.page({**base, "copy_rate": {"tried": [], "copy_rate": 0.5},
                                                          "pair": None})[-1]


def kept_by_bench_gitignore(work, clone):
    """The files of `work` that git would keep under bench/.gitignore, copied to `clone`."""
    import shutil
    import subprocess

    repo = clone.parent / "kept-repo"
    shutil.copytree(work, repo / "w")
    shutil.copy(Path(__file__).parents[2] / "bench" / ".gitignore", repo / ".gitignore")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "--others", "--exclude-standard", "w"],
                            capture_output=True, text=True, check=True).stdout.split()
    for f in listed:
        (clone / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / f, clone / f)
    return clone / "w"


def test_the_control_runs_though_its_jump_cannot_pass():
    """docs/last_word.md §4: at the control (a recurrence nothing before it determines) the jump and the 80 %
    prefix's success are reported, not required; its other gates, and every gate at the switch, still are.
    The figures are the bench's control base's (bench/last-word, copy rate 0.9)."""
    from prefixrl_lab.reuse import meets

    g = {"knowledge": {"ok": True},
         "reachable": {"expected_yield": 0.645, "min_yield": 0.25, "prefix80_success": 0.160, "ok": False},
         "jump": {"after80_exact": 0.188, "ok": False}, "reuse": {"margin": 0.0002, "ok": True}}
    assert meets(g, control=True) and not meets(g, control=False)
    assert not meets({**g, "reachable": {**g["reachable"], "expected_yield": 0.2}}, control=True)
    assert not meets({**g, "reuse": {"margin": 0.2, "ok": False}}, control=True)
    assert not meets({**g, "knowledge": {"ok": False}}, control=True)
    assert meets({k: {**v, "ok": True} for k, v in g.items()}, control=False)


def test_bench_status_reads_an_in_context_record(tmp_path):
    """scripts/bench_status.py over a work folder that holds `bench in-context`'s runs beside last-word's:
    an in-context record names its figures after the problems they score (heldout, first_use_knowledge)."""
    rec = {"seed": 0, "steps": 100, "p2": 2.3e-3, "p3": 3.7e-3, "heldout": 1.4e-3, "first_use_knowledge": 0.2}
    f = tmp_path / "in-context" / "seed0" / "prefixrl" / "bench_record.json"
    f.parent.mkdir(parents=True)
    f.write_text(json.dumps({"key": {}, "record": rec}))
    status = runpy.run_path(str(Path(__file__).parents[2] / "scripts" / "bench_status.py"))["rows"](tmp_path)
    assert status == ["| in-context/seed0/prefixrl | 100 | 0.0014 (heldout) | 0.200 | – |"]
