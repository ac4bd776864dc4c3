"""`prefixrl select`: the paper's hard set (§5: the problems on which the base has pass@512 = 0).

Each problem is sampled in rounds (sent in requests of --chunk-size problems) until its first verified
success or the budget k, exactly as rejection sampling does (`prefixrl.data.collect`), so a problem that
is solved early costs little. The problems with no success in k are the hard set. The selection's FLOPs are kept in its own ledger (select/) and
reported, never charged to a method: its state is saved under "selection", not "collection", so no
stage reads it as a collection's cost. A killed selection continues with --resume.
"""

from __future__ import annotations

import json

from prefixrl.cli.options import SelectConfig, problem_count
from prefixrl.cli.policy import _params, check_length, load_policy, make_engine
from prefixrl.data.collect import Collection, rejection_sample
from prefixrl.data.prompt import rendering_record, tokenizer_fingerprint
from prefixrl.data.tasks.base import problems_digest
from prefixrl.data.tasks.files import raw_rows
from prefixrl.data.traces import load_traces, save_traces
from prefixrl.data.verifier import deadlined
from prefixrl.io.errors import BadInput
from prefixrl.io.outputs import Output, claim
from prefixrl.io.store import atomic_write, read_meta, read_sealed_json, write_sealed_json
from prefixrl.rollout.flops import Ledger
from prefixrl.rollout.model import model_folder


def run_select(cfg: SelectConfig) -> dict:
    with claim("select", [Output(cfg.out, kind="folder", existing="resume" if cfg.resume else "refuse")],
               {"--model": cfg.model, **cfg.inputs()}, hint="--resume (to continue it)"):
        return _select(cfg)


def _select(cfg: SelectConfig) -> dict:
    folder = model_folder(cfg.model, weights=cfg.engine == "builtin")
    model, tok, task = load_policy(folder, cfg.task_spec(), weights=cfg.engine == "builtin", device=cfg.device,
                                   rendering=cfg.rendering(), allow_rerender=cfg.allow_rerender)
    problems = task.problems(cfg.split, problem_count(cfg.problems, task.name, cfg.generated), cfg.data_seed)
    key = {"model": str(cfg.model), "split": cfg.split, "problems": problems_digest(problems), "budget": cfg.budget,
           "per_round": cfg.per_round, "temperature": cfg.temperature, "top_p": cfg.top_p, "seed": cfg.seed,
           "max_new_tokens": cfg.max_new_tokens, "tokenizer": tokenizer_fingerprint(tok),
           "rendering": rendering_record(tok)["fingerprint"]}
    store = cfg.out / "sampling.parquet"
    cfg.out.mkdir(parents=True, exist_ok=True)
    with deadlined(task, cfg.verifier_workers, cfg.verifier_timeout) as task:
        resumed = _resumed(store, key, task, tok)
        if resumed is not None and resumed[1]:
            return read_sealed_json(cfg.out / "summary.json")

        def save(col: Collection, finished: bool) -> None:
            save_traces(store, col.traces, {"selection": {
                "key": key, "finished": finished, "samples": col.samples,
                "flops": col.flops, "ledger": col.ledger.to_dict()}}, tok, task)

        params = _params(task, cfg)
        check_length(model, folder, tok, problems, params.max_new_tokens)
        engine = make_engine(cfg.engine, model, folder, tok, cfg.seed, cfg.engine_options())
        col = rejection_sample(engine, tok, task, problems, params, source=f"select:{cfg.model}", cap=cfg.budget,
                               per_round=cfg.per_round, seed=cfg.seed, chunk=cfg.chunk_size,
                               resume_from=resumed[0] if resumed else None, on_chunk=save)
    table = hardness_table(problems, col)
    hard = [row for row in table if not row["solved"]]
    _write_jsonl(cfg.out / "per_problem.jsonl", table)
    _write_jsonl(cfg.out / "selected.jsonl", _selected_rows(task, problems, hard, cfg.budget))
    ledger = {k.replace("collect/", "select/", 1): v for k, v in col.ledger.to_dict().items()}
    summary = {"problems": len(problems), "selected": len(hard), "budget": cfg.budget,
               "samples": sum(col.samples.values()), "flops": col.ledger.total(), "ledger": ledger,
               "charged": "to no method: the selection's own cost, reported"}
    save(col, True)
    write_sealed_json(cfg.out / "summary.json", summary)
    return summary


def hardness_table(problems, col: Collection) -> list[dict]:
    """Every problem's figures: samples drawn, whether one was verified correct, and which sample that was."""
    first = {t.problem_id: t.samples for t in col.traces}  # the sample that first succeeded
    return [{"problem_id": p.id, "split": p.split, "samples": col.samples[p.id], "solved": p.id in first,
             "first_success_at": first.get(p.id), "flops": col.flops[p.id]} for p in problems]


def _resumed(store, key: dict, task, tok) -> tuple[Collection, bool] | None:
    if not store.exists():
        return None
    state = read_meta(store).get("selection")
    if state is None or state["key"] != key:
        diff = [k for k in key if (state or {}).get("key", {}).get(k) != key[k]]
        raise BadInput(f"{store}: was sampled with different settings ({', '.join(diff) or 'not a selection'}); "
                       "resume with the same command, or choose another --out")
    traces, rejected = load_traces(store, task, tok)
    if rejected:
        raise BadInput(f"{store}: {rejected[0]}")
    return Collection(traces, state["samples"], state["flops"], Ledger.from_dict(state["ledger"])), state["finished"]


def _selected_rows(task, problems, hard: list[dict], budget: int) -> list[dict]:
    """The hard problems in the dataset's own columns (a dataset task), or as id/question/answer rows (a
    generated one), each with the figures measured for it."""
    by_id = {p.id: p for p in problems}
    inner = getattr(task, "inner", task)
    raw = raw_rows(inner) if hasattr(inner, "path") else {}
    out = []
    for row in hard:
        p = by_id[row["problem_id"]]
        base = raw.get(p.id, {"question": p.question, "answer": p.answer})
        out.append({**base, "prefixrl_id": p.id, "prefixrl_samples": row["samples"], "prefixrl_successes": 0,
                    "prefixrl_budget": budget})
    return out


def _write_jsonl(path, rows: list[dict]) -> None:
    atomic_write(path, lambda f: f.write("".join(json.dumps(r, default=str) + "\n" for r in rows).encode()))
