"""Where a long bench stands, from what its work folder holds: every finished run's record, one row each.

    python scripts/bench_status.py bench/last-word

A bench renders its pages only once every run of a setting has finished (docs/last_word.md); until then
this table is how its progress is read, and the numbers docs/last_word.md's Status section gives come from
it. A tuning run's exact pass@1 is on the validation problems, a reported run's on the hard-heldout ones
(`prefixrl_lab.comparison`). Reads JSON only: no torch, no model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows(work: Path) -> list[str]:
    out = []
    for f in sorted(work.rglob("bench_record.json")):
        rec = json.loads(f.read_text())["record"]
        run = f.parent.relative_to(work)
        scored = "validation" if "tune" in run.parts else "heldout"
        cpu = (rec.get("machine") or {}).get("cpu", "–")
        # an in-context run (prefixrl_lab.in_context) names its figures after the problems they score
        exact = rec.get("exact", rec.get("heldout"))
        knowledge = rec.get("rare_knowledge", rec.get("first_use_knowledge"))
        out.append(f"| {run} | {rec.get('steps', '–')} | {exact:.3g} ({scored}) | "
                   f"{float('nan') if knowledge is None else knowledge:.3f} | {cpu} |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", nargs="+", type=Path, help="bench work folders (--work of the bench)")
    args = ap.parse_args(argv)
    print("| run | RL steps | exact pass@1 | rare-step knowledge | CPU |\n|---|---|---|---|---|")
    for work in args.work:
        print("\n".join(rows(work)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
