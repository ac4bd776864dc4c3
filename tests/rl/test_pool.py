"""The pool beyond the paper (`prefixrl.rl.pool`): the adaptive prefix ladder on hand-made success tables,
harvesting only verified, unprefixed, on-policy successes, re-collection charged sample by sample, and
runs with them on that resume bit-identical. Every sample here is scripted, so nothing depends on sampling luck or float rounding."""

import json

import pytest
import torch
from conftest import reference_traces
from safetensors.torch import load_file

from prefixrl.data.prefixes import PrefixedPrompt, cut_prefixes
from prefixrl.data.prompt import encode_response, render_prompt
from prefixrl.data.tasks.base import Problem, Verdict
from prefixrl.data.traces import load_traces
from prefixrl.io.errors import BadInput
from prefixrl.rl.pool import Ladder, Pool, ladder_of
from prefixrl.rl.settings import RLSettings
from prefixrl.rl.train import RunOptions, TrainingSet, recollect, result_settings, train_rl
from prefixrl.rollout.engine import Generations, Sample
from prefixrl.rollout.flops import Ledger
from prefixrl.rollout.model import ModelShape, build_model

C, I, N = Verdict.CORRECT, Verdict.INCORRECT, Verdict.NO_ANSWER


def walk(table: list[float], ladder: Ladder, visits: int) -> list[int]:
    """Feed the ladder the table's success at whatever rung it stands on; the rungs it stood on."""
    seen = []
    for _ in range(visits):
        seen.append(ladder.at)
        ladder.observe(table[ladder.at], target=0.5, band=0.25)
    return seen


def test_the_ladder_settles_on_the_cut_nearest_the_target_and_walks_down_as_the_policy_improves():
    lad = Ladder(Problem("p", "", "q", "a"), cuts=[0, 10, 20, 30, 40], token_ids=list(range(50)), at=4)
    # success rises with the prefix's length; the policy only solves long prefixes
    assert walk([0.0, 0.0, 0.1, 0.5, 0.95], lad, 6) == [4, 3, 3, 3, 3, 3]  # 0.95: too easy, one down; 0.5 stays
    # better: 0.9 is too easy once the running estimate (0.5, then 0.7, then 0.8) leaves the band; 0.6 is in it
    assert walk([0.0, 0.2, 0.6, 0.9, 1.0], lad, 6) == [3, 3, 2, 2, 2, 2]
    assert walk([0.5, 0.9, 1.0, 1.0, 1.0], lad, 5) == [2, 1, 0, 0, 0]  # down to no prefix, where it is 0.5
    # a problem that no longer solves without a prefix gets one back
    assert walk([0.0, 0.4, 1.0, 1.0, 1.0], lad, 4) == [0, 0, 1, 1]  # (0.5 → 0.25 → 0.125 < 0.25)
    # the running estimate: one lucky group inside the band does not move it, a second one does
    lad = Ladder(Problem("p", "", "q", "a"), cuts=[0, 10], token_ids=list(range(20)), at=1)
    lad.observe(0.75, 0.5, 0.25)
    assert lad.at == 1 and lad.success == 0.75
    lad.observe(1.0, 0.5, 0.25)  # (0.75 + 1.0) / 2 = 0.875 > 0.75
    assert lad.at == 0 and lad.success is None  # a new rung starts without an estimate


def test_ladder_cuts_are_token_exact_rising_and_never_hold_the_answer(task, tok):
    for t in reference_traces(task, tok, n=6):
        lad = ladder_of(t, task, tok, rungs=8)
        assert lad.cuts[0] == 0 and lad.cuts == sorted(set(lad.cuts)) and lad.at == len(lad.cuts) - 1
        assert len(lad.cuts) > 3
        for cut in lad.cuts:
            prefix = t.token_ids[:cut]
            assert task.extract_answer(tok.decode(prefix)) is None
            assert PrefixedPrompt.of(tok, t.problem, prefix).ids == render_prompt(tok, t.question) + prefix


def adaptive_pool(task, tok, traces, harvest=False, **kw):
    return Pool([t.problem for t in traces], [], traces, "adaptive", harvest, task, tok, **kw)


def test_the_adaptive_draw_gives_each_drawn_problem_its_current_rung(task, tok):
    traces = reference_traces(task, tok, n=8)
    pool = adaptive_pool(task, tok, traces)
    pool.ladders[traces[0].problem_id].at = 0
    prompts = pool.draw(tok, 0.75, 8, seed=1, step=3)
    assert len(prompts) == 8 and sum(p.fraction is not None for p in prompts) == 6
    for p in prompts[:6]:
        lad = pool.ladders[p.problem.id]
        assert p.prefix_ids == lad.token_ids[: lad.cuts[lad.at]] and p.fraction == lad.fraction
    assert all(p.fraction is None and not p.prefixed for p in prompts[6:])
    again = pool.draw(tok, 0.75, 8, seed=1, step=3)
    assert [p.ids for p in again] == [p.ids for p in prompts]  # a function of (seed, step) and the pool's state


def test_harvest_takes_only_verified_unprefixed_on_policy_successes(task, tok):
    traces = reference_traces(task, tok, n=8)
    traced, rest = traces[:4], traces[4:]
    pool = Pool([t.problem for t in traces], cut_prefixes(traced, task, tok, seed=0), [], "fixed", True, task, tok)
    wrong = encode_response(tok, "0 0 0 0 0 0 #0")
    right = {t.problem_id: list(t.token_ids) + [tok.eos_token_id] for t in traces}

    def plain(t):
        return PrefixedPrompt.of(tok, t.problem)

    def prefixed(t):
        return PrefixedPrompt.of(tok, t.problem, t.token_ids[:5], 0.3)

    a, b, c = rest[0], rest[1], rest[2]
    # a prefixed sample of an untraced problem, even a correct one, is not a trace (it is not the policy's alone)
    pool.observe(1, [prefixed(a)], [[right[a.problem_id][5:]]], [[C]], tok.eos_token_id, 1.0, 1.0, "harvest:prefixrl")
    # no sample that the verifier did not call correct becomes one
    pool.observe(2, [plain(a)], [[right[a.problem_id], wrong, wrong]], [[I, N, Verdict.TIMEOUT]], tok.eos_token_id,
                 1.0, 1.0, "harvest:prefixrl")
    # a problem that already has a trace is left alone
    pool.observe(3, [plain(traced[0])], [[right[traced[0].problem_id]]], [[C]], tok.eos_token_id, 1.0, 1.0, "h")
    assert pool.harvested == [] and pool.tries == {a.problem_id: 3}
    n_prefixes = len(pool.prefixed)
    pool.observe(4, [plain(b), plain(a)], [[wrong, right[b.problem_id]], [right[a.problem_id]]], [[I, C], [C]],
                 tok.eos_token_id, 1.0, 1.0, "harvest:prefixrl")
    got = {t.problem_id: t for t in pool.harvested}
    assert set(got) == {a.problem_id, b.problem_id} and c.problem_id not in pool.traced
    hb = got[b.problem_id]
    assert hb.token_ids == list(b.token_ids) and hb.source == "harvest:prefixrl@step4" and hb.flops == 0.0
    assert hb.samples == 2 and got[a.problem_id].samples == 4  # samples drawn up to and including the success
    assert task.verify(hb.problem, hb.response) is Verdict.CORRECT
    # their prefixes joined the pool, cut by the paper's rule with the run's seed, and hold no answer
    new = pool.prefixed[n_prefixes:]
    assert {p.problem_id for p in new} == {a.problem_id, b.problem_id} and len(new) == 6
    assert new[:3] == cut_prefixes([hb], task, tok, seed=0) or new[3:] == cut_prefixes([hb], task, tok, seed=0)


def test_the_pool_state_round_trips(task, tok):
    traces = reference_traces(task, tok, n=8)
    pool = adaptive_pool(task, tok, traces[:4], harvest=True)
    pool.unprefixed = [t.problem for t in traces]
    pool.ladders[traces[1].problem_id].observe(1.0, 0.5, 0.25)
    pool.ladders[traces[2].problem_id].observe(0.7, 0.5, 0.25)
    pool.observe(5, [PrefixedPrompt.of(tok, traces[6].problem)], [[list(traces[6].token_ids)]], [[C]],
                 tok.eos_token_id, 1.0, 1.0, "harvest:prefixrl")
    state = json.loads(json.dumps(pool.state()))  # what the checkpoint writes
    again = adaptive_pool(task, tok, traces[:4], harvest=True)
    again.unprefixed = pool.unprefixed
    again.restore(state)
    assert again.state() == pool.state() and set(again.ladders) == set(pool.ladders) and len(again.ladders) == 5
    assert [p.ids for p in again.draw(tok, 0.75, 8, 0, 9)] == [p.ids for p in pool.draw(tok, 0.75, 8, 0, 9)]


class Interrupted(Exception):
    pass


class ScriptedSolver:
    """Solves a prompt in the first k of its n samples, k rising with the prefix's share of the trace (1 for
    a plain problem), and writes a wrong answer in the rest. With `fail_at`, that generate call raises."""

    def __init__(self, tok, traces, fail_at=None):
        self.tok, self.fail_at, self.calls, self.prompts = tok, fail_at, 0, []
        self.heads = [(render_prompt(tok, t.question), list(t.token_ids)) for t in traces]
        self.wrong = encode_response(tok, "0 0 0 0 0 0 #0")

    def generate(self, prompts, n, params, seed, seeds=None):
        self.calls += 1
        if self.calls == self.fail_at:
            raise Interrupted
        out = []
        self.prompts.append(len(prompts))
        for ids in prompts:
            head, sol = next(((h, s) for h, s in self.heads if ids[: len(h)] == h), (None, None))
            if head is None:  # a problem it cannot solve: every sample wrong
                out.append([Sample(self.wrong, [-0.5], False) for _ in range(n)])
                continue
            cut = len(ids) - len(head)
            k = 1 + round((n - 1) * cut / len(sol))
            out.append([Sample(sol[cut:] + [self.tok.eos_token_id] if i < k else self.wrong, [-0.5], False)
                        for i in range(n)])
        return Generations(out, prefill_flops=1.0, decode_flops=2.0)


GAINS = {"adaptive+harvest": {"prefix_schedule": "adaptive", "harvest": True},
         "fixed+recollect": {"recollect_every": 2, "recollect_cap": 4}}


@pytest.mark.parametrize("gain", list(GAINS))
def test_a_run_with_them_on_resumes_bit_identical(task, tok, tmp_path, gain):
    traces = reference_traces(task, tok, n=8)
    problems = [t.problem for t in traces]
    cfg = RLSettings(prompts_per_step=4, samples_per_prompt=4, steps=9, checkpoint_every=3, eval_every=4,
                     eval_problems=4, eval_samples=2, lr=1e-2, **GAINS[gain])

    def run(out, engine, resume=False):
        model = build_model(tok, ModelShape(hidden=32, layers=1, heads=2, ffn=64, max_positions=128), seed=0)
        train_rl(model, tok, TrainingSet(task, problems, [], traces[:4]), cfg, out,
                 RunOptions(progress=False, resume=resume, engine=engine))
        return out

    ref = run(tmp_path / "ref", ScriptedSolver(tok, traces))
    with pytest.raises(Interrupted):
        run(tmp_path / "killed", ScriptedSolver(tok, traces, fail_at=9))  # after the step-3 checkpoint
    killed = run(tmp_path / "killed", ScriptedSolver(tok, traces), resume=True)
    a, b = load_file(ref / "final" / "model.safetensors"), load_file(killed / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    logs = [[{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in (d / "metrics.jsonl").open()]
            for d in (ref, killed)]
    assert logs[0] == logs[1]
    steps = [r for r in logs[0] if r["kind"] == "step"]
    harvested = [load_traces(d / "harvested.parquet", task, tok) for d in (ref, killed)]
    assert harvested[0] == harvested[1] and not harvested[0][1]
    if gain == "fixed+recollect":  # step 2 re-collected the 4 untraced problems; their prefixes joined the draws
        assert [r["recollected"] for r in steps[:3]] == [0, 4, 4] and steps[-1]["traced"] == 8
        assert steps[0]["prefix_fraction"] is None and steps[2]["prefix_fraction"] is not None
        assert all(t.source == "recollect:prefixrl@step2" for t in harvested[0][0])
        return
    # the state that resume had to restore really changed before the kill: traces harvested, ladders moved
    n = steps[-1]["harvested"]
    assert steps[2]["harvested"] >= 1 and n > steps[2]["harvested"] and steps[-1]["traced"] == 4 + n
    assert steps[0]["cut_bands"] != steps[-1]["cut_bands"]
    assert len(harvested[0][0]) == n
    assert all(t.source.startswith("harvest:prefixrl@step") for t in harvested[0][0])


def test_recollect_charges_every_sample_and_adds_only_verified_traces_of_untraced_problems(task, tok):
    traces = reference_traces(task, tok, n=8)
    pool = Pool([t.problem for t in traces], [], traces[:4], "adaptive", task=task, tokenizer=tok, recollect=True)
    engine, ledger = ScriptedSolver(tok, traces[:6]), Ledger()  # it solves 2 of the 4 untraced problems
    cfg = RLSettings(recollect_every=5, recollect_cap=8, max_new_tokens=task.max_response_tokens)
    assert recollect(pool, engine, task, tok, cfg, 5, ledger) == 2
    assert engine.prompts == [4]  # one round (cap 8 ≤ 32 per round) over the untraced problems only
    assert ledger.to_dict() == {"recollect/decode": 2.0, "recollect/prefill": 1.0}  # every sample, solved or not
    gained = {t.problem_id: t for t in pool.harvested}
    assert set(gained) == {traces[4].problem_id, traces[5].problem_id}
    for t in gained.values():
        assert t.source == "recollect:prefixrl@step5" and t.samples == 8
        assert task.verify(t.problem, t.response) is Verdict.CORRECT and t.flops > 0  # its cost stays on it
        assert t.problem_id in pool.ladders  # its cuts joined the pool by the schedule's rule
    assert pool.log().items() >= {"traced": 6, "harvested": 0, "recollected": 2}.items()
    assert recollect(pool, engine, task, tok, cfg, 10, ledger) == 0
    assert engine.prompts == [4, 2]  # the next one samples only the two still untraced
    for bad in ({"method": "rl", "recollect_every": 5}, {"recollect_every": 5, "recollect_cap": 0}):
        with pytest.raises(BadInput):
            RLSettings(**bad).check()


def test_a_run_keys_recollection_only_when_it_is_on():
    # Cached bench records and resumable checkpoints are keyed by result_settings: a run with
    # re-collection off must keep the key it had before re-collection existed, and one with it on must
    # key both its settings.
    off = result_settings(RLSettings())
    assert "recollect_every" not in off and "recollect_cap" not in off
    assert result_settings(RLSettings(recollect_cap=7)) == off
    assert result_settings(RLSettings(checkpoint_every=3)) == off
    on = result_settings(RLSettings(recollect_every=50))
    assert on["recollect_every"] == 50 and on["recollect_cap"] == 64
    assert result_settings(RLSettings(recollect_every=50, recollect_cap=7)) != on
