"""The CLI's data stages: the runners of `collect`, `prefixes`, `eval`, `export` (their configs are in
`prefixrl.cli.options`).

Runners do the I/O around the pure pieces in the other modules. The task of a model folder is read from its prefixrl.json (written by
`prefixrl pretrain`), so every stage agrees on the task without repeating its knobs.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefixrl.cli.options import (
    CollectConfig,
    EvalConfig,
    ExportConfig,
    MergeConfig,
    PrefixesConfig,
    parse_shard,
    problem_count,
)
from prefixrl.cli.policy import _params, check_length, load_policy, make_engine, task_spec_of
from prefixrl.data.collect import Collection, import_traces, rejection_sample
from prefixrl.data.evaluate import evaluate, pass_at_k
from prefixrl.data.prefixes import answer_safe_cut, cut_prefixes, load_prefixes, save_prefixes
from prefixrl.data.prompt import control_text, render_prompt, rendering_of, rendering_record, tokenizer_fingerprint
from prefixrl.data.shards import merge_shards
from prefixrl.data.tasks.base import check_same_problems, problems_digest
from prefixrl.data.traces import TRACE_SCHEMA, load_traces, save_traces
from prefixrl.data.verifier import deadlined
from prefixrl.embedded import calibration
from prefixrl.io.errors import BadInput
from prefixrl.io.outputs import Output, claim
from prefixrl.io.store import (
    atomic_write,
    read_meta,
    read_sealed_json,
    write_json_atomic,
    write_records,
    write_sealed_json,
)
from prefixrl.rl import exact
from prefixrl.rollout.flops import Ledger
from prefixrl.rollout.model import load, model_folder


def run_collect(cfg: CollectConfig) -> dict:
    with claim("collect", cfg.outputs(), {"--model": cfg.model, "--import-file": cfg.import_file, **cfg.inputs()},
               hint="--resume (to continue it)"):
        return _collect(cfg)


def _collect(cfg: CollectConfig) -> dict:
    folder = model_folder(cfg.model)  # the regime gate reads the weights whatever engine samples
    model, tok, task = load_policy(folder, cfg.task_spec(), weights=cfg.engine == "builtin" and not cfg.import_file,
                                   device=cfg.device, rendering=cfg.rendering(), allow_rerender=cfg.allow_rerender)
    problems = selection = task.problems("hard_train", problem_count(cfg.problems, task.name, cfg.generated),
                                         cfg.data_seed)
    # What a collection is, and what `prefixrl merge` checks its shards agree on: "problems" names the whole
    # selection, so a shard's key is the unsharded key plus "shard".
    key = {"model": str(cfg.model), "problems": problems_digest(problems), "cap": cfg.cap, "per_round": cfg.per_round,
           "temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed,
           "tokenizer": tokenizer_fingerprint(tok), "rendering": rendering_record(tok)["fingerprint"],
           "import_file": None if cfg.import_file is None else str(cfg.import_file)}
    if cfg.shard is not None:
        index, count = parse_shard(cfg.shard)
        if index >= len(problems):
            raise BadInput(f"--shard {cfg.shard}: shard {index} of {count} holds none of the {len(problems)} "
                           "problems; use at most as many shards as problems")
        problems = problems[index::count]
        key["shard"] = f"{index}/{count}"
    with deadlined(task, cfg.verifier_workers, cfg.verifier_timeout) as task:
        resume_from = _resumable_collection(cfg, key, task, tok)
        if resume_from is not None and resume_from[1]:  # finished before
            return read_sealed_json(cfg.out.with_suffix(".json"))
        if cfg.import_file is not None:
            traces, rejected = import_traces(cfg.import_file, task, tok, problems)
            summary = {"problems": len(problems), "solved": len(traces), "samples": 0, "flops": 0.0,
                       "imported_from": str(cfg.import_file), "rejected": rejected}
            save_traces(cfg.out, traces, {"collection": {"key": key, "finished": True}}, tok, task)
        else:
            if exact.supports_exact(task) and resume_from is None:
                # on the whole selection: every shard of one collection passes or fails the same gate
                gate_sampling(model, folder, tok, task, selection, cfg.cap, cfg.min_yield)
            params = _params(task, cfg)
            check_length(model, folder, tok, problems, params.max_new_tokens)
            engine = make_engine(cfg.engine, model, folder, tok, cfg.seed, cfg.engine_options())

            def save(col: Collection, finished: bool) -> None:
                save_traces(cfg.out, col.traces, {"collection": {
                    "key": key, "finished": finished, "samples": col.samples, "flops": col.flops,
                    "ledger": col.ledger.to_dict()}}, tok, task)

            col = rejection_sample(engine, tok, task, problems, params, source=str(cfg.model), cap=cfg.cap,
                                   per_round=cfg.per_round, seed=cfg.seed, chunk=cfg.chunk_size,
                                   resume_from=resume_from[0] if resume_from else None, on_chunk=save)
            save(col, True)
            summary = {**col.summary(), "ledger": col.ledger.to_dict(),
                       "verifier": dict(task.pool.counts)}
    write_sealed_json(cfg.out.with_suffix(".json"), summary)
    return summary


def run_merge(cfg: MergeConfig) -> dict:
    inputs = {f"shard {path}": path for path in cfg.shards}
    with claim("merge", cfg.outputs(), inputs):
        rows, meta = merge_shards(list(cfg.shards))
        state = meta["collection"]
        summary = {"problems": len(state["samples"]), "solved": len(rows), "samples": sum(state["samples"].values()),
                   "flops": sum(state["flops"].values()), "ledger": state["ledger"],
                   "merged_from": [str(p) for p in cfg.shards]}
        write_records(cfg.out, rows, TRACE_SCHEMA, meta)
        write_sealed_json(cfg.out.with_suffix(".json"), summary)
    return summary


def gate_sampling(model, model_dir: Path, tok, task, problems, cap: int, min_yield: float) -> dict:
    """Measure the base's regime exactly on the problems about to be sampled and stop (exit 2) before
    any sampling if it is outside its calibration window or the expected yield is below the floor."""
    if model is None:  # an engine such as vLLM loads its own weights; the measurement needs them here
        model, _ = load(model_dir)
    g = calibration.sampling_gates(exact.measure(model, tok, task, problems, cap=cap), calibration.base_target(model_dir), min_yield)
    calibration.check_sampling_gates(g, str(model_dir))
    return g


def _resumable_collection(cfg: CollectConfig, key: dict, task, tok) -> tuple[Collection, bool] | None:
    """(the collection saved in --out, whether it finished), or None for a new store. Never overwrites."""
    if not cfg.out.exists():
        return None
    if not cfg.resume:
        raise BadInput(f"{cfg.out}: already exists and a trace store is never overwritten; pass --resume to "
                       "continue an interrupted collection, or choose another --out")
    state = read_meta(cfg.out).get("collection")
    if state is None:
        raise BadInput(f"{cfg.out}: not a store written by `prefixrl collect`; it cannot be resumed")
    if state["key"] != key:
        diff = [k for k in key if state["key"].get(k) != key[k]]
        raise BadInput(f"{cfg.out}: was collected with different settings ({', '.join(diff)}); resume with the "
                       "same command, or choose another --out")
    traces, rejected = load_traces(cfg.out, task, tok)
    if rejected:
        raise BadInput(f"{cfg.out}: {rejected[0]}")
    if "samples" not in state:  # an import
        return Collection(traces, {}, {}), True
    return Collection(traces, state["samples"], state["flops"], Ledger.from_dict(state["ledger"])), state["finished"]


def run_prefixes(cfg: PrefixesConfig) -> dict:
    with claim("prefixes", [Output(cfg.out, existing="replace" if cfg.overwrite else "refuse")],
               {"--traces": cfg.traces, "--model": cfg.model, **cfg.inputs()}):
        return _prefixes(cfg)


def _prefixes(cfg: PrefixesConfig) -> dict:
    _, tok, task = load_policy(cfg.model, cfg.task_spec(), weights=False,  # cuts are token ids: no weights
                               rendering=cfg.rendering(), allow_rerender=cfg.allow_rerender)
    with deadlined(task, cfg.verifier_workers, cfg.verifier_timeout) as task:
        traces, rejected = load_traces(cfg.traces, task, tok, cfg.allow_rerender)
    prefixes = cut_prefixes(traces, task, tok, k=cfg.k, low=cfg.low, high=cfg.high, seed=cfg.seed)
    save_prefixes(cfg.out, prefixes, tok, task)
    return {"traces": len(traces), "rejected": rejected, "prefixes": len(prefixes)}


def run_eval(cfg: EvalConfig) -> dict:
    existing = "replace" if cfg.overwrite else "refuse"
    outputs = [Output(path, flag, existing=existing) for path, flag in ((cfg.out, "--out"),
                                                                       (cfg.per_problem, "--per-problem"),
                                                                       (cfg.plot, "--plot"))
               if path is not None]
    with claim("eval", outputs, {"--model": cfg.model, "--traces": cfg.traces, **cfg.inputs()}):
        return _eval(cfg)


def _eval(cfg: EvalConfig) -> dict:
    folder = model_folder(cfg.model, weights=cfg.engine == "builtin")
    model, tok, task = load_policy(folder, cfg.task_spec(), weights=cfg.engine == "builtin", device=cfg.device,
                                   rendering=cfg.rendering(), allow_rerender=cfg.allow_rerender)
    if cfg.fractions:
        return _eval_fractions(cfg, model, folder, tok, task)
    problems = task.problems(cfg.split, problem_count(cfg.problems, task.name, cfg.generated), cfg.data_seed)
    params = _params(task, cfg)
    check_length(model, folder, tok, problems, params.max_new_tokens)
    with deadlined(task, cfg.verifier_workers, cfg.verifier_timeout) as task:
        engine = make_engine(cfg.engine, model, folder, tok, cfg.seed, cfg.engine_options())
        r = evaluate(engine, tok, task, problems, cfg.samples, params, seed=cfg.seed, progress=True)
    res = {"split": cfg.split, "problems": len(problems), "samples": cfg.samples, "verdicts": r.verdicts,
           **{f"pass@{k}": r.pass_at(k) for k in cfg.k}}
    if model is not None and exact.supports_exact(task):
        # Exact, noise-free figures beside the sampled ones (docs/model.md); rare_knowledge: how much of
        # the rare operations the policy knows (docs/regimes.md), None without rare steps.
        res["exact_pass@1"] = exact.measure(model, tok, task, problems)["exact_pass@1"]
        res["rare_knowledge"] = exact.rare_knowledge(model, tok, task, problems)
    if cfg.per_problem is not None:
        rows = [{"problem_id": p.id, "split": p.split, "samples": cfg.samples, "correct": c,
                 **{f"pass@{k}": pass_at_k(cfg.samples, c, k) for k in cfg.k}} for p, c in zip(problems, r.correct)]
        atomic_write(cfg.per_problem, lambda f: f.write("".join(json.dumps(row) + "\n" for row in rows).encode()))
    if cfg.out is not None:
        write_json_atomic(cfg.out, res)
    return res


def _eval_fractions(cfg: EvalConfig, model, folder: Path, tok, task) -> dict:
    """pass@k after the first f of each trace's tokens, per problem and fraction (the paper's Fig. 3)."""
    with deadlined(task, cfg.verifier_workers, cfg.verifier_timeout) as task:
        traces, rejected = load_traces(cfg.traces, task, tok, cfg.allow_rerender)
        if not traces:
            raise BadInput(f"{cfg.traces}: no trace passes re-verification ({len(rejected)} rejected)")
        # the longest a cut can be is its whole trace: checked as if every prefix were
        check_length(model, folder, tok, [], _params(task, cfg).max_new_tokens,
                     [(t.problem, t.token_ids) for t in traces])
        engine, rows = make_engine(cfg.engine, model, folder, tok, cfg.seed, cfg.engine_options()), []
        for f in cfg.fractions:
            cuts = [answer_safe_cut(task, tok, list(t.token_ids), int(f * len(t.token_ids))) for t in traces]
            r = evaluate(engine, tok, task, [t.problem for t in traces], cfg.samples, _params(task, cfg), seed=cfg.seed,
                         prefixes=[list(t.token_ids[:c]) for t, c in zip(traces, cuts)], desc=f"eval f={f:g}")
            rows += [{"problem_id": t.problem_id, "fraction": f, "cut": c, "trace_tokens": len(t.token_ids),
                      "samples": cfg.samples, "correct": n, **{f"pass@{k}": pass_at_k(cfg.samples, n, k) for k in cfg.k}}
                     for t, c, n in zip(traces, cuts, r.correct)]
    res = {"traces": len(traces), "rejected": len(rejected), "samples": cfg.samples,
           "by_fraction": {str(f): {f"pass@{k}": sum(x[f"pass@{k}"] for x in rows if x["fraction"] == f) / len(traces)
                                    for k in cfg.k} for f in cfg.fractions}}
    if cfg.per_problem is not None:
        atomic_write(cfg.per_problem, lambda fh: fh.write("".join(json.dumps(x) + "\n" for x in rows).encode()))
    if cfg.plot is not None:
        from prefixrl.cli.plot import plot_fractions

        plot_fractions(rows, cfg.plot)
    if cfg.out is not None:
        write_json_atomic(cfg.out, res)
    return res


def run_export(cfg: ExportConfig) -> dict:
    read = {"--traces": cfg.traces} if cfg.ladder_rungs else {"--prefixes": cfg.prefixes}
    with claim("export", [Output(cfg.out, existing="replace" if cfg.overwrite else "refuse")],
               {**read, "--model": cfg.model, **cfg.inputs()}):
        return _export(cfg)


def _export(cfg: ExportConfig) -> dict:
    from prefixrl.rl import export

    folder = model_folder(cfg.model, weights=False)  # rows are token ids: the tokenizer is all it needs
    spec = task_spec_of(folder, cfg.task_spec())
    _, tok, task = load_policy(folder, spec, weights=False, rendering=cfg.rendering(), allow_rerender=cfg.allow_rerender)
    problems = task.problems("hard_train", problem_count(cfg.problems, task.name, cfg.generated), cfg.data_seed)
    if cfg.ladder_rungs:
        with deadlined(task, cfg.verifier_workers, cfg.verifier_timeout) as checked:  # traces are re-verified
            traces, _ = load_traces(cfg.traces, checked, tok, cfg.allow_rerender)
        check_same_problems(traces, problems, str(cfg.traces), "traces")
        rows = export.ladder_pool(traces, problems, task, tok, cfg.ladder_rungs)
    else:
        prefixes = load_prefixes(cfg.prefixes, task, tok, cfg.allow_rerender) if cfg.mix > 0 else []
        if cfg.mix > 0 and not prefixes:
            raise BadInput(f"{cfg.prefixes}: holds no prefix (no trace was found or imported), so a pool that is "
                           f"{cfg.mix:g} prefixed has nothing in it; collect or import traces, or --mix 0 for plain "
                           "rows")
        check_same_problems(prefixes, problems, str(cfg.prefixes), "prefixes")
        rows = export.training_pool(prefixes, problems, tok, cfg.mix, cfg.seed)
    # Both frameworks cap the prompt length, and prompt + prefix must fit (docs/trl.md, docs/verl.md): a row
    # over the cap is dropped here, counted, rather than refused or left-truncated (which cuts the problem)
    # by the engine mid-run. Filtering is by length only, so the pool's mix can shift: both counts are shown.
    length = [len(render_prompt(tok, r.question)) + len(r.prefix_ids) for r in rows]
    cap = cfg.max_prompt_tokens if cfg.max_prompt_tokens is not None else max(length, default=0)
    dropped = [r for r, n in zip(rows, length) if n > cap]
    rows, length = [r for r, n in zip(rows, length) if n <= cap], [n for n in length if n <= cap]
    if not rows:
        raise BadInput(f"every row is longer than --max-prompt-tokens {cfg.max_prompt_tokens}; nothing to export")
    rendering = rendering_of(tok)
    # the trainers render the rows' messages as text, where a special token's text becomes the control token
    # (a forged turn): such rows are refused here, counted; `prefixrl train` encodes that text as data
    held = {}
    for r in rows:
        found = next((t for m in rendering.messages(r.question) if (t := control_text(tok, m["content"]))), None)
        if found:
            held.setdefault(r.problem_id, found)
    if held:
        pid, text = next(iter(held.items()))
        raise BadInput(f"{len(held)} problem(s) hold special-token text (problem {pid}: {text!r}); TRL and verl "
                       "would render it as a control token: remove it from the dataset, or train with `prefixrl "
                       "train`, which encodes it as text")
    if rendering.chat_template_kwargs:  # the rows carry messages; the template's arguments would be lost
        raise BadInput("--chat-template-kwargs: the TRL and verl rows carry chat messages, rendered by the trainer "
                       "without them; set them in the trainer's own config and export without them")
    record = rendering_record(tok)
    if cfg.format == "trl":
        export.write_rows(cfg.out, export.trl_records(rows, rendering, cfg.prefixed_samples), export.TRL_SCHEMA, spec,
                          record)
    else:
        export.write_rows(cfg.out, export.verl_records(rows, cfg.data_source, cfg.ability, spec, rendering),
                          export.VERL_SCHEMA, spec, record)
    return {"rows": len(rows), "prefixed": sum(r.kind == "prefixed" for r in rows),
            "max_prompt_tokens": max(length), "dropped_too_long": len(dropped),
            "dropped_prefixed": sum(r.kind == "prefixed" for r in dropped)}
