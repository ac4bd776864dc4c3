"""The verifier pool: a hard deadline per item, workers replaced after a hang or a crash, the run goes on."""

import os
import time
from pathlib import Path
from dataclasses import dataclass

import pytest

from prefixrl.data.tasks.base import Problem, Verdict, reward
from prefixrl.data.verifier import Deadlined, VerifierPool, deadlined, verify_all


@dataclass(frozen=True)
class Adversarial:
    """A verifier with the failure modes of real ones, chosen by the response text."""

    name: str = "adversarial"

    def verify(self, problem: Problem, response: str) -> Verdict:
        if response == "hang":
            while True:  # e.g. math-verify on a deeply nested power
                pass
        if response == "sleep":
            time.sleep(60)
        if response == "crash":
            os._exit(1)  # e.g. a segfault in a C extension
        if response == "raise":
            raise RecursionError("malformed LaTeX")
        return Verdict.CORRECT if response == problem.answer else Verdict.INCORRECT


P = Problem("p0", "test", "q", "42")


def test_hang_crash_and_raise_get_verdicts_within_the_deadline_and_the_pool_keeps_serving():
    items = [(P, "42"), (P, "hang"), (P, "7"), (P, "crash"), (P, "raise"), (P, "sleep"), (P, "42")]
    with VerifierPool(Adversarial(), workers=2, timeout=1.0) as pool:
        pool.verify_many([(P, "42")])  # workers up (interpreter start is not part of any deadline)
        t0 = time.monotonic()
        verdicts = pool.verify_many(items)
        elapsed = time.monotonic() - t0
        assert verdicts == [Verdict.CORRECT, Verdict.TIMEOUT, Verdict.INCORRECT, Verdict.ERROR, Verdict.ERROR,
                            Verdict.TIMEOUT, Verdict.CORRECT]
        # two hung items, each costing one deadline plus a worker restart; nothing waits on the 60 s sleep
        assert elapsed < 15
        assert pool.counts["timeout"] == 2 and pool.counts["error"] == 2 and pool.counts["restarts"] == 3
        # the replaced workers serve the next batch normally
        assert pool.verify_many([(P, "42"), (P, "1")] * 50) == [Verdict.CORRECT, Verdict.INCORRECT] * 50
    assert [reward(v) for v in verdicts] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def test_a_hang_inside_a_chunk_loses_only_that_item():
    items = [(P, "42")] * 40 + [(P, "hang")] + [(P, "1")] * 40
    with VerifierPool(Adversarial(), workers=1, timeout=1.0) as pool:
        verdicts = pool.verify_many(items)
    assert verdicts == [Verdict.CORRECT] * 40 + [Verdict.TIMEOUT] + [Verdict.INCORRECT] * 40


def test_deadlined_task_is_the_task_with_pooled_verification(task):
    probs = task.problems("hard_train", 8, 0)
    items = [(p, task.solution(p)) for p in probs] + [(p, "0 #0") for p in probs]
    inline = verify_all(task, items)
    with deadlined(task, workers=2, timeout=5.0) as guarded:
        assert isinstance(guarded, Deadlined) and guarded.hard_steps == task.hard_steps
        assert verify_all(guarded, items) == inline
        assert guarded.verify(*items[0]) is Verdict.CORRECT
    assert inline == [Verdict.CORRECT] * 8 + [Verdict.INCORRECT] * 8


def test_pool_rejects_nonsense_settings_and_tasks_a_worker_cannot_load():
    with pytest.raises(ValueError, match="workers must be >= 1"):
        VerifierPool(Adversarial(), workers=0)
    for timeout in (float("nan"), float("inf"), 0.0, -1.0):  # NaN never expires, inf never fires
        with pytest.raises(ValueError, match="timeout must be a finite number of seconds > 0"):
            VerifierPool(Adversarial(), workers=1, timeout=timeout)
    with pytest.raises(RuntimeError, match="could not load the task"):
        VerifierPool(Unloadable(), workers=1)


class Unloadable:
    def __reduce__(self):  # unpickles into an error in the worker
        return (int, ("not a number",))


class HangsOnFirstProblem:
    """The chain task, except that verifying anything for one problem hangs."""

    def __init__(self, inner, bad_id):
        self.inner, self.bad_id = inner, bad_id

    def __getattr__(self, name):
        if name == "inner":  # not set yet while unpickling in a worker
            raise AttributeError(name)
        return getattr(self.inner, name)

    def verify(self, problem, response):
        while problem.id == self.bad_id:
            pass
        return self.inner.verify(problem, response)


def test_training_goes_on_through_hung_verifications_and_logs_them(task, tok, tiny_model, tmp_path):
    import json

    from prefixrl.rl.train import RLSettings, RunOptions, TrainingSet, train_rl

    problems = task.problems("hard_train", 3, 0)
    cfg = RLSettings(method="rl", steps=2, prompts_per_step=3, samples_per_prompt=2, max_new_tokens=16,
                     eval_every=100, eval_problems=1, eval_samples=1)
    with deadlined(HangsOnFirstProblem(task, problems[0].id), workers=2, timeout=0.3) as guarded:
        result = train_rl(tiny_model, tok, TrainingSet(guarded, problems, []), cfg, tmp_path, RunOptions(progress=False))
        counts = guarded.pool.counts
    steps = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if s["kind"] == "step"]
    assert result["steps"] == 2 and [s["verifier_timeouts"] for s in steps] == [2, 2]
    assert counts["timeout"] >= 4 and counts["restarts"] == counts["timeout"]


def test_a_pool_whose_only_worker_died_while_idle_replaces_it_and_serves():
    """The OOM killer takes an idle worker; the next batch used to crash with min() of an empty sequence."""
    import signal

    with VerifierPool(Adversarial(), workers=1, timeout=5.0) as pool:
        assert pool.verify_many([(P, "42")]) == [Verdict.CORRECT]
        proc = pool._workers[0].proc
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert pool.verify_many([(P, "42"), (P, "7")]) == [Verdict.CORRECT, Verdict.INCORRECT]
        assert pool.counts["restarts"] == 1


def test_workers_run_isolated_so_a_module_planted_in_the_working_directory_is_never_imported(tmp_path, monkeypatch):
    marker = tmp_path / "PLANTED-RAN"
    for name in ("ctypes", "json", "pickle", "prefixrl"):  # the verifier imports ctypes; anything else lazily
        (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write('{name}\\n')\n")
    monkeypatch.chdir(tmp_path)
    with VerifierPool(Adversarial(), workers=2, timeout=5.0) as pool:
        assert pool.verify_many([(P, "42"), (P, "1")]) == [Verdict.CORRECT, Verdict.INCORRECT]
    assert not marker.exists(), marker.read_text()


@dataclass(frozen=True)
class HangingMath:
    """math-verify behind a response that hangs: what a replaced worker sees right after a timeout."""

    path: str

    def warm_up(self):
        self._inner().warm_up()

    def _inner(self):
        from prefixrl.data.tasks.math import MathTask

        return MathTask(self.path)

    def verify(self, problem: Problem, response: str) -> Verdict:
        if response == "hang":
            while True:
                pass
        return self._inner().verify(problem, response)


def test_a_replaced_worker_imports_its_verifier_before_it_is_ready_so_no_answer_pays_for_the_import(tmp_path):
    """math-verify imports sympy: seconds. Before, 4 of 6 correct answers that followed a hang timed out at 2 s."""
    (tmp_path / "p.jsonl").write_text('{"problem": "1 + 0?", "answer": "1"}\n')
    task = HangingMath(str(tmp_path / "p.jsonl"))
    p = Problem("m0", "hard_train", "1 + 0?", "1")
    with VerifierPool(task, workers=1, timeout=2.0) as pool:
        verdicts = pool.verify_many([(p, "hang")] + [(p, "\\boxed{1}")] * 6)
        assert verdicts == [Verdict.TIMEOUT] + [Verdict.CORRECT] * 6 and pool.counts["restarts"] == 1


def test_workers_import_prefixrl_from_the_folder_that_holds_it():
    """The workers' import path starts at the folder holding the package, never at a folder inside it (where
    prefixrl's own io/, data/, cli/ would shadow modules of those names)."""
    import prefixrl
    from prefixrl.data.verifier import _import_path

    holder = os.path.realpath(Path(next(iter(prefixrl.__path__))).parent)
    assert _import_path()[0] == holder
