"""The lab's reports: each bench writes its results as JSON first, then one renderer turns that JSON,
and nothing else, into its markdown page. `python -m prefixrl_lab.reports FILE.json` renders a saved one
again (the plots are drawn by the runs themselves: they need per-step logs the JSON does not keep).

| kind | JSON | page |
|---|---|---|
| demo | report.json | report.md |
| paper | results.json | results.md |
| cross-family | cross_family.json | cross_family.md |
| regimes | regimes.json | regimes.md (below its marker) |
| last-word | last_word.json | last_word_results.md |
| in-context | in_context.json | in_context.md |
| perf | performance.json | performance.md |
| theory | results.json | results.md |
"""

from __future__ import annotations

import json
from pathlib import Path


def writers() -> dict:
    from prefixrl_lab.reports import cross_family, demo, in_context, last_word, paper, perf, regime_map, theory

    return {"demo": demo.write, "paper": paper.write, "cross-family": cross_family.write,
            "regimes": regime_map.write, "last-word": last_word.write,
            "in-context": in_context.write, "perf": perf.write, "theory": theory.write}


def save(path: Path, data: dict) -> None:
    """Write a bench's results (atomically), then render its page beside them from that file alone."""
    from prefixrl.io.store import write_json_atomic  # pyarrow: not at import, so `prefixrl theory --help` stays light

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, data)
    render(path)


def render(path: Path) -> None:
    """The page of a saved results file, written beside it (the JSON's `kind` names the renderer)."""
    data = json.loads(Path(path).read_text())
    writers()[data["kind"]](Path(path).parent, data)
