"""in_context.md from in_context.json (`prefixrl bench in-context`; its rules: docs/last_word.md §5)."""

from __future__ import annotations

from pathlib import Path

FIGURES = (("p2", "P2 alone"), ("p3", "P3 alone (never trained)"), ("p2_after_p3", "P2 after P3's worked steps"),
           ("heldout", "class hard-heldout"), ("first_use_knowledge", "rare-step knowledge, first uses"))


def write(folder: Path, res: dict) -> None:
    (folder / "in_context.md").write_text("\n".join(page(res)) + "\n")


def _f(x) -> str:
    return "–" if x is None else f"{x:.3g}"


def page(res: dict) -> list[str]:
    rules = res["rules"]
    lines = ["# The paper's in-context experiment, in miniature", "",
             "Written by `prefixrl bench in-context` under the rules committed before its runs (docs/last_word.md §5). "
             "The paper (§4.3, App. E.2): RL on a problem P2 with a related P3 and its full solution in context; "
             "afterwards P3 is solved without context (60 %, against 18 % for standard RL on P2). Here, in the reuse "
             "switch's task: P3 is P2's chain through its last first use, as a problem of its own; its worked steps "
             "start P2's response, and P2's last step looks up again an operand P3 looked up. Every figure is exact "
             f"pass@1 (teacher-forced). {res['torch_threads']} torch thread(s); wall-clock {res['seconds'] / 60:.1f} min.",
             ""]
    copy = res["copy_rate"]
    if copy["copy_rate"] is None:
        return lines + ["No copy rate gave a base that meets the reuse gate (docs/last_word.md §4): "
                        + "; ".join(f"{t['copy_rate']:g}: {t.get('margin', t.get('error'))}" for t in copy["tried"])
                        + ". Nothing ran."]
    if res.get("pair") is None:
        return lines + [f"Copy rate {copy['copy_rate']:g}. No pair among the first {rules['scan']} hard-train problems "
                        f"meets the gates (P2 and P3 alone ≤ {rules['alone_max']:g}, P2 after P3's worked steps ≥ "
                        f"{rules['with_prefix_min']:g}, exact, on the base). Nothing ran."]
    pair, g = res["pair"], res["pair"]["gates"]
    lines += [f"Copy rate {copy['copy_rate']:g}; base pretrained {res['pretrain_steps']} steps. The pair: hard-train "
              f"problem {pair['p2']['id']} (the first of {g['scanned']} scanned to meet the gates).", "",
              f"- P2: `{pair['p2']['question']}`", f"- P3: `{pair['p3']['question']}`",
              f"- P3's worked steps (the prefix): `{pair['steps']}`", "",
              f"Gates on the base: P2 alone {g['p2']:.2e} ≤ {rules['alone_max']:g}, P3 alone {g['p3']:.2e} ≤ "
              f"{rules['alone_max']:g}, P2 after P3's worked steps {g['p2_after_p3']:.3f} ≥ {rules['with_prefix_min']:g}: "
              "**pass**.", "",
              f"PrefixRL: {rules['steps']} steps on P2 with the prefix on every prompt (lr {res['lr']['prefixrl']:g}); "
              f"standard RL on P2 alone until the same FLOPs (lr {res['lr']['rl']:g}); the lrs are those section 1 "
              f"chose at one class. Seeds {', '.join(str(r['seed']) for r in res['runs']['prefixrl'])}.", "",
              "| | " + " | ".join(name for _, name in FIGURES) + " | steps |",
              "|---|" + "---|" * (len(FIGURES) + 1),
              "| base | " + " | ".join(_f(res["base"][k]) for k, _ in FIGURES) + " | – |"]
    for label, name in (("prefixrl", "PrefixRL"), ("rl", "standard RL")):
        for r in res["runs"][label]:
            lines.append(f"| {name}, seed {r['seed']} | " + " | ".join(_f(r[k]) for k, _ in FIGURES) + f" | {r['steps']} |")
    pre, rl = res["runs"]["prefixrl"], res["runs"]["rl"]
    lines += ["", "P3 alone after training, PrefixRL ÷ standard RL per seed: " + ", ".join(
        f"{a['p3'] / b['p3']:.2f}" if b["p3"] > 0 else "–" for a, b in zip(pre, rl)) + "."]
    return lines
