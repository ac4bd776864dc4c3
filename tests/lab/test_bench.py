"""`prefixrl bench paper` at toy size: every method runs, every table and plot is written."""

import json
import math

import pytest

from prefixrl_lab.cli import main
from prefixrl_lab.curves import final_target, flops_to_reach


def assert_page_is_its_json(results, page):
    """Reports are data first: the page is exactly what the one renderer makes of the saved JSON alone."""
    from prefixrl_lab.reports import render

    written = page.read_text()
    page.unlink()
    render(results)
    assert page.read_text() == written


def test_flops_to_reach_uses_the_seed_mean_step_curve():
    import numpy as np

    a = [{"flops": 10.0, "acc": 0.0}, {"flops": 20.0, "acc": 0.4}, {"flops": 30.0, "acc": 0.8}]
    b = [{"flops": 10.0, "acc": 0.0}, {"flops": 20.0, "acc": 0.2}, {"flops": 30.0, "acc": 0.4}]
    grid = np.linspace(0, 30, 31)
    assert flops_to_reach([a, b], "acc", 0.3, grid) == 20.0  # mean at 20 is 0.3
    assert flops_to_reach([a, b], "acc", 0.6, grid) == 30.0
    assert flops_to_reach([a, b], "acc", 0.7, grid) is None


def test_the_target_to_reach_is_read_on_the_problems_its_curve_measures():
    # sampled splits: the final mean over every heldout problem; exact heldout: the curves' last points,
    # which cover the same first 64 heldout problems as the curve a ratio is read off
    a = [{"flops": 1.0, "p": 0.1}, {"flops": 2.0, "p": 0.3}]
    b = [{"flops": 1.0, "p": 0.2}, {"flops": 2.0, "p": 0.5}]
    assert final_target([a, b], "hard_train", "p", 0.25) == 0.25
    assert final_target([a, b], "hard_heldout_exact", "p", 0.25) == pytest.approx(0.4)


def test_the_benches_run_the_papers_methods_and_the_admitted_variants_and_a_flag_always_wins():
    from prefixrl_lab.configs import BenchConfig
    from prefixrl_lab.lineup import DEFAULT_METHODS, PAPER_METHODS

    # pilot 5 admitted the adaptive variants: both benches run them next to the paper's seven
    assert BenchConfig("paper").resolved().methods == DEFAULT_METHODS
    assert DEFAULT_METHODS[: len(PAPER_METHODS)] == PAPER_METHODS  # the paper's seven first
    assert BenchConfig("paper", quick=True).resolved().methods == DEFAULT_METHODS
    assert BenchConfig("regimes").resolved().methods == DEFAULT_METHODS
    assert {"prefixrl-adaptive", "prefixrl-adaptive-harvest"} <= set(DEFAULT_METHODS)
    assert "prefixrl-harvest" not in DEFAULT_METHODS
    assert BenchConfig("regimes", quick=True).resolved().methods == ("prefixrl", "rl", "sft-rl")
    for which, quick in (("paper", False), ("regimes", True), ("regimes", False)):
        assert BenchConfig(which, quick=quick, methods=("rl",)).resolved().methods == ("rl",)


def _report_res(rare_steps: int) -> dict:
    """A bench result as `summarise` and `analyse` shape it: one seed, standard RL starved, SFT→RL ahead."""
    row = {"hard_train_mean": 0.001, "hard_heldout_mean": 0.001, "hard_heldout_exact_mean": 1e-3,
           "rare_knowledge_mean": 0.2, "strategy_differ_share": None, "strategy_solves": 0}
    table = {"prefixrl": dict(row), "prefixrl-only": dict(row), "rl": dict(row), "sft-rl": dict(row)}
    table["sft-rl"].update(hard_heldout_exact_mean=5e-3, rare_knowledge_mean=0.22, strategy_differ_share=0.75,
                           strategy_solves=8)
    return {"table": table, "ratios": {}, "config": {"rare_steps": rare_steps, "classes": 4, "collect_cap": 1024},
            "collections": [{"solved": 40, "problems": 64}], "rl_lr": {m: 3e-5 for m in table},
            "analysis": {"rs_flops": [1.9e12], "rl_steps_with_signal_first100": [3], "rl_flops_to_0.1": [None],
                         "rl_first_success_flops": [1.6e11], "prefixrl_flops_to_0.1_after_rs": [None],
                         "traces_free": [{"on_policy_flops": 8e12, "prefixrl": 0.0, "rl_at_same_flops": 0.0,
                                          "prefixrl_exact": 8e-4, "rl_exact_at_same_flops": 1.4e-3}]}}


def test_the_reports_reasons_follow_the_measurements_and_the_task_setting():
    from prefixrl_lab.reports.paper import _paper_comparison, _why

    text = "\n".join(_paper_comparison(_report_res(4)) + _why(_report_res(4)))
    # the strategy change is measured where a problem has 2^K correct responses, with its count and chance level
    assert "sft-rl 75% of 8" in text and "2^4 = 16" in text and "94%" in text
    assert "Standard RL is starved" in text and "0.16 TFLOP" in text and "not stuck" not in text
    # ranked by the noise-free figure; the reading fits missing knowledge, not a shared skill
    assert "sft-rl (5.00e-03) ends above PrefixRL (1.00e-03) in exact hard-heldout pass@1" in text
    assert "rediscover a rare step" in text and "single correct response" not in text
    assert "PrefixRL 8.00e-04, standard RL 1.40e-03" in text
    shared = "\n".join(_paper_comparison(_report_res(0)) + _why(_report_res(0)))
    assert "not measurable at `--rare-steps 0`" in shared and "single correct response" in shared
    late = _report_res(0)
    late["analysis"]["rl_flops_to_0.1"] = [6.5e12]  # escaped, but after what rejection sampling cost (1.9 T)
    assert "Standard RL escapes, but late" in "\n".join(_why(late))
    late["analysis"]["rl_flops_to_0.1"] = [1.0e12]
    assert "Standard RL is not stuck at zero here" in "\n".join(_why(late))


def test_the_exact_table_says_what_each_mean_rests_on():
    from prefixrl_lab.reports.paper import _spread_lines

    res = _report_res(4)
    res["config"]["heldout_problems"] = 128
    res["base_exact_spread"] = {"mean": 1.02e-3, "median": 1.0e-3, "learned": 0, "top_share": 0.01}
    flat = {"mean": 1.4e-3, "median": 0.9e-3, "learned": 2, "top_share": 0.1}  # within 2x of the base: not named
    for t in res["table"].values():
        t["exact_spread"] = [flat]
    res["table"]["sft-rl"]["exact_spread"] = [{"mean": 5e-3, "median": 2e-5, "learned": 3, "top_share": 0.85}]
    text = "\n".join(_spread_lines(res))
    assert "1.0e-03 on its median problem" in text and "0 problems at ≥ 1 %" in text
    assert "fell below half the base's under sft-rl (2.0e-05): those" in text  # the others stayed within 2x
    assert "a single problem carries more than half of the mean for sft-rl (85%)" in text
    del res["base_exact_spread"]
    assert _spread_lines(res) == []  # a task without exact measurement says nothing


def test_the_map_says_what_each_mean_rests_on_and_how_the_variants_compare():
    from prefixrl_lab.reports.regime_map import _rests_on_lines, _variant_lines

    def setting(k, sft_median):
        sp = lambda median, share: [{"mean": 2e-3, "median": median, "learned": 1, "top_share": share}] * 2
        table = {"prefixrl": {"exact_spread": sp(9e-4, 0.2)}, "sft-rl": {"exact_spread": sp(sft_median, 0.9)},
                 "prefixrl-adaptive": {"exact_spread": sp(1e-3, 0.3)}}
        variants = {"prefixrl-adaptive": {"hard_heldout_exact": {
            "prefixrl": {"method": "prefixrl", "flops_ratio": 0.33, "final_ratio": 1.73},
            "strongest": {"method": "sft-rl", "flops_ratio": None, "final_ratio": 0.39}}}}
        return {"rare_steps": k, "classes": 4, "results": {
            "table": table, "variants": variants,
            "base_exact_spread": {"mean": 1e-3, "median": 1.0e-3, "learned": 0, "top_share": 0.02}}}

    text = "\n".join(_rests_on_lines([setting(0, 1e-3), setting(4, 1e-5)]))
    assert "| 4 | 4 | 1.0e-03 / 0 | 9.0e-04 / 1, 1 | 1.0e-05 / 1, 1 | 1.0e-03 / 1, 1 |" in text
    # the same rule as results.md: a median below half the base's, one problem > 50 % of the mean
    assert "K = 4, classes = 4: median problem below half the base's: sft-rl; one problem > 50 % of the mean " \
           "in some seed: sft-rl (90%)." in text
    assert "K = 0, classes = 4: median problem below half the base's: none;" in text
    variants = "\n".join(_variant_lines([setting(4, 1e-5)]))
    assert "| 4 | 4 | prefixrl-adaptive | prefixrl: 0.33, 1.73 | sft-rl: never, 0.39 | – | – |" in variants
    # a map without exact measurement or without variants says nothing of them
    bare = setting(0, 1e-3)
    del bare["results"]["base_exact_spread"], bare["results"]["variants"]
    assert _rests_on_lines([bare]) == [] and _variant_lines([bare]) == []


@pytest.mark.slow
def test_bench_smoke(tmp_path, shared_bases):
    out = tmp_path / "docs"
    args = ["bench", "paper", "--out", str(out), "--work", str(tmp_path / "w"), "--seeds", "2", "--hard-steps", "4",
            "--rare-steps", "0", "--teacher-accuracy", "0.9", "--pretrain-steps", "300", "--train-problems", "6",
            "--heldout-problems", "8",
            "--flops-budget", "3e10", "--passk-samples", "4", "--collect-cap", "64", "--no-progress"]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["table"]) == {"prefixrl", "prefixrl-only", "rl", "rl-n64", "sft-rl", "offpolicy", "luffy",
                                 "prefixrl-adaptive", "prefixrl-adaptive-harvest"}
    for m, t in res["table"].items():
        assert set(t["passk_heldout"]) == {"1", "2", "4"} and len(t["steps"]) == 2
    # the chain task lists its correct responses, so finals and curves also carry exact heldout pass@1
    assert set(res["ratios"]) == {"hard_train", "hard_heldout", "hard_heldout_exact"}
    for t in res["table"].values():
        assert 0 < t["hard_heldout_exact_mean"] <= 1 and t.get("rare_knowledge_mean") is None  # no rare steps here
    curve = res["runs"]["rl"][0]["curve"]
    assert all(0 < pt["heldout_exact_pass@1"] <= 1 for pt in curve)
    # what each exact mean rests on, per seed, read off the saved final policies, and the base's
    for t in res["table"].values():
        assert len(t["exact_spread"]) == 2
        for sp in t["exact_spread"]:
            assert 0 < sp["median"] <= 1 and 0 <= sp["learned"] <= 8 and 0 < sp["top_share"] <= 1
    assert res["base_exact_spread"]["mean"] > 0 and res["kind"] == "paper"
    assert_page_is_its_json(out / "results.json", out / "results.md")
    assert len(res["bands"]) == 3
    for png in ("acc_vs_flops_hard-train", "acc_vs_flops_hard-heldout", "passk_heldout", "health", "backgen_bands"):
        assert (out / "results" / f"{png}.png").stat().st_size > 0

    # A rerun on the same work folder (a bench killed and restarted) reuses every finished run and
    # collection, and gives the same results; a run whose record is gone is redone, identically.
    records = {p: p.stat().st_mtime_ns for p in (tmp_path / "w").rglob("bench_record.json")}
    stores = {p: p.stat().st_mtime_ns for p in (tmp_path / "w").rglob("traces.parquet")}
    (tmp_path / "w" / "seed1" / "luffy" / "bench_record.json").unlink()
    assert main(args) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["table"] == res["table"] and again["bands"] == res["bands"]
    redone = [p for p, t in records.items() if p.stat().st_mtime_ns != t]
    assert redone == [tmp_path / "w" / "seed1" / "luffy" / "bench_record.json"]  # only the missing run was redone
    assert all(p.stat().st_mtime_ns == t for p, t in stores.items())  # no collection was sampled again
    assert again["seconds"] > res["seconds"]  # the reported run time sums both invocations
    assert "analysis" in again
    assert_page_is_its_json(out / "results.json", out / "results.md")


@pytest.mark.slow
def test_the_variants_beyond_the_paper_run_next_to_prefixrl(tmp_path, shared_bases):
    """--methods names the adaptive and harvest variants; each is compared with PrefixRL's fixed cuts and with
    the strongest baseline (never with another variant), and the cut distribution is plotted."""
    out = tmp_path / "docs"
    assert main(["bench", "paper", "--out", str(out), "--work", str(tmp_path / "w"), "--seeds", "1", "--hard-steps",
                 "4", "--rare-steps", "0", "--teacher-accuracy", "0.9", "--pretrain-steps", "300", "--train-problems",
                 "8", "--heldout-problems", "8", "--flops-budget", "3e10", "--passk-samples", "4", "--collect-cap", "16",
                 "--methods", "prefixrl", "rl", "prefixrl-adaptive", "prefixrl-harvest", "prefixrl-adaptive-harvest",
                 "--no-bands", "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["variants"]) == {"prefixrl-adaptive", "prefixrl-harvest", "prefixrl-adaptive-harvest"}
    for v in res["variants"].values():
        assert v["hard_train"]["prefixrl"]["method"] == "prefixrl"
        assert v["hard_train"]["strongest"]["method"] == "rl"  # the only baseline here
    assert res["ratios"]["hard_train"]["strongest_baseline"] == "rl"
    assert len(res["table"]["prefixrl-harvest"]["harvested"]) == 1 and not res["table"]["prefixrl"]["harvested"]
    steps = json.loads((tmp_path / "w" / "seed0" / "prefixrl-adaptive" / "metrics.jsonl").read_text().splitlines()[1])
    assert "cut_bands" in steps and 0 < steps["prefix_fraction"] < 1
    assert_page_is_its_json(out / "results.json", out / "results.md")
    assert (out / "results" / "prefix_cuts.png").stat().st_size > 0


@pytest.mark.slow
def test_cross_family_smoke(tmp_path, shared_bases):
    out = tmp_path / "docs"
    args = ["bench", "cross-family", "--out", str(out), "--work", str(tmp_path / "w"), "--hard-steps", "4",
            "--rare-steps", "0", "--teacher-accuracy", "0.9", "--pretrain-steps", "300", "--train-problems", "6",
            "--heldout-problems", "8",
            "--flops-budget", "3e10", "--collect-cap", "64", "--no-progress"]
    assert main(args) == 0
    res = json.loads((out / "cross_family.json").read_text())
    assert set(res["runs"]) == {"same-model", "cross-family"}
    assert "Qwen2" in res["models"]["other"] and res["sources"]["cross-family"]["transferred"] > 0
    assert (out / "cross_family.md").is_file() and (out / "results" / "cross_family.png").stat().st_size > 0
    assert_page_is_its_json(out / "cross_family.json", out / "cross_family.md")


@pytest.mark.slow
def test_perf_bench_writes_every_figure(tmp_path):
    """`prefixrl bench perf`: the page and the JSON keys the issue names, all measured (positive, finite)."""
    out = tmp_path / "docs"
    assert main(["bench", "perf", "--quick", "--work", str(tmp_path / "w"), "--out", str(out), "--json",
                 str(tmp_path / "perf.json"), "--hard-steps", "6", "--rare-steps", "0", "--pretrain-steps", "30",
                 "--calibration", "none",
                 "--no-progress"]) == 0
    r = json.loads((tmp_path / "perf.json").read_text())
    for key in ("sampler_vs_generate_prefix50", "sampler_vs_generate_noprefix", "train_fraction_of_peak",
                "rejection_samples_per_s", "matmul_peak_flops"):
        assert math.isfinite(r[key]) and r[key] > 0, key
    assert set(r["step_seconds_by_prefix_fraction"]) == {"0.0", "0.25", "0.5", "0.75"}
    assert all(v > 0 for v in r["step_seconds_by_prefix_fraction"].values())
    assert_page_is_its_json(out / "performance.json", out / "performance.md")
    page = (out / "performance.md").read_text()
    assert "bench perf --quick" in page and f"{r['sampler_vs_generate_prefix50']:.2f}×" in page
    # every goal is stated, met or missed, and a miss carries the figure of this run that explains it
    goals = page.split("## The goals, met or missed")[1].split("\n## ")[0]
    rows = [line for line in goals.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 5 and all(line.count("|") == 6 for line in rows)
    assert all(line.split("|")[5].strip() for line in rows if "**no**" in line)
    assert f"{r['sampler_vs_generate_noprefix']:.2f}×" in goals


@pytest.mark.slow
def test_regimes_bench_maps_the_knob(tmp_path, shared_bases):
    """`prefixrl bench regimes` at toy size: both ends of the knob, two class counts where K > 0 (K = 0 has
    no classes and runs once), the gates at each, the theory beside it, and docs/regimes.md rewritten below
    its marker only."""
    from prefixrl_lab.reports.regime_map import MARKER

    out = tmp_path / "docs"
    out.mkdir()
    (out / "regimes.md").write_text(f"# Hand-written design\n\nkept\n\n{MARKER}\n\nstale numbers\n")
    args = ["bench", "regimes", "--out", str(out), "--work", str(tmp_path / "w"), "--knob", "0", "2", "--class-axis",
            "1", "2", "--seeds", "1", "--hard-steps", "6", "--teacher-accuracy", "0.9", "--pretrain-steps", "300",
            "--train-problems", "6", "--heldout-problems", "8", "--flops-budget", "3e10", "--passk-samples", "4",
            "--collect-cap", "64", "--methods", "prefixrl", "rl", "sft-rl", "prefixrl-adaptive", "--no-progress"]
    assert main(args) == 0
    res = json.loads((out / "regimes.json").read_text())
    assert list(res["settings"]) == ["K=0, classes=4", "K=2, classes=1", "K=2, classes=2"]
    for s in res["settings"].values():
        assert {"knowledge", "reachable", "rl_starved", "transfer"} <= set(s["gates"])
        exact = s["gates"]["transfer"]["exact"]  # the chain task lists its correct responses
        assert all(0 < exact[f"{h}_{t}"] <= 1 for h in ("trained", "other") for t in ("before", "after"))
        assert set(s["results"]["table"]) == {"prefixrl", "rl", "sft-rl", "prefixrl-adaptive"}
        assert set(s["results"]["variants"]) == {"prefixrl-adaptive"} and s["results"]["base_exact_spread"]
        assert s["traces_free"]["strongest_baseline"] in ("rl", "sft-rl")
        # noise-free figures where the task lists its correct responses: traces-free ratio and per-seed ratios
        assert s["traces_free"]["exact"]["strongest_baseline"] in ("rl", "sft-rl")
        assert len(s["results"]["ratios"]["hard_heldout_exact"]["final_acc_ratio_vs_rl_seeds"]) == 1
        assert s["pretrain_steps"] in (300, 600)  # 600 only where a 300-step base cannot be calibrated
        # each setting has its own base, pretrained on its own task
        meta = json.loads((tmp_path / "w" / f"rare{s['rare_steps']}-classes{s['classes']}" / "base" /
                           "prefixrl.json").read_text())
        assert (meta["task"]["rare_steps"], meta["task"]["classes"]) == (s["rare_steps"], s["classes"])
    k0, k2 = res["settings"]["K=0, classes=4"], res["settings"]["K=2, classes=2"]
    assert k0["theory"]["ratio"] == 1.0 and k2["theory"]["H"] == 2
    # the shared-skill end: greedy decoding knows what sampling misses; with rare steps it does not
    assert k0["gates"]["knowledge"]["greedy_pass@1"] > k2["gates"]["knowledge"]["greedy_pass@1"]
    page = (out / "regimes.md").read_text()
    assert page.startswith("# Hand-written design") and "kept" in page and "stale numbers" not in page
    assert "## The map" in page and "### K = 2, classes = 1" in page and "| 2 | 2 | " in page
    assert (out / "regimes" / "rare2-classes1" / "results.md").is_file()
    assert "in exact pass@1, that half from" in page
    assert "### What each exact mean rests on" in page and "| 2 | 1 | prefixrl-adaptive | prefixrl: " in page


def test_a_base_too_weak_to_calibrate_is_pretrained_twice_as_long_once(tmp_path, capsys):
    """The map's base rule: a setting whose base cannot reach the calibration target at --pretrain-steps
    is pretrained twice as long; if that fails too, the one-line error stands (exit 2 from the CLI)."""
    from prefixrl.embedded import calibration
    from prefixrl_lab.configs import BenchConfig
    from prefixrl_lab.regime_map import base_steps

    cfg = BenchConfig("regimes", work=tmp_path / "w", hard_steps=6, rare_steps=2, classes=1, pretrain_steps=1,
                      teacher_accuracy=0.9,
                      progress=False)
    with pytest.raises(calibration.BaseTooWeak, match="pretrain longer"):  # one step, then two: a random model
        base_steps(cfg)
    assert "pretraining 2 steps instead" in capsys.readouterr().err
    assert not (tmp_path / "w" / "base").exists()  # a failed base leaves nothing behind
