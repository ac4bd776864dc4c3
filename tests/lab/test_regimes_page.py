"""docs/regimes.md's first section is written by hand from docs/last_word.json (`prefixrl bench last-word`):
its verdict and its means must be the rendered ones, digit for digit, so the page cannot drift from the data."""

import json
import re
from pathlib import Path

DOCS = Path(__file__).parents[2] / "docs"
ROWS = {"K = 4, one class": ("settings", "rare4-classes1"), "K = 4, four classes": ("settings", "rare4-classes4"),
        "reuse switch": ("reuse", "switch"), "its control": ("reuse", "control")}


def _settings():
    res = json.loads((DOCS / "last_word.json").read_text())
    return {row: (res["settings"][name] if part == "settings" else res["reuse"]["settings"][name])
            for row, (part, name) in ROWS.items()}


def _table_rows(page: str, header: str) -> dict[str, list[str]]:
    """The rows of the markdown table whose header line starts with `header`, keyed by their first cell."""
    lines = page[page.index(header):].splitlines()
    rows = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].split(" (")[0]] = cells[1:]
    return rows


def test_the_verdict_table_is_the_rendered_verdict():
    page = (DOCS / "regimes.md").read_text()
    rows = _table_rows(page, "| setting | against standard RL |")
    assert set(rows) == set(ROWS)
    for row, s in _settings().items():
        for cell, v in zip(rows[row], s["verdict"].values(), strict=True):
            ratios = ", ".join(f"{r:.2f}" for r in v["ratios"])
            assert cell.startswith(f"{ratios} ({v['geo_mean']:.2f}): "), (row, cell)
            words = re.sub(r"\*\*|PrefixRL is ", "", cell.split(": ", 1)[1])
            assert v["words"].replace("PrefixRL is ", "").startswith(words), (row, cell, v["words"])


def test_the_means_table_is_the_rendered_table():
    page = (DOCS / "regimes.md").read_text()
    rows = _table_rows(page, "| setting | PrefixRL | standard RL |")
    for row, s in _settings().items():
        for cell, label in zip(rows[row], ("prefixrl", "rl", "sft-rl", "regft-rl"), strict=True):
            t = s["table"][label]
            figures = [x.split()[-1] for x in cell.split("; ")]
            assert figures == [f"{t['exact_mean']:.2e}".replace("e-0", "e-"), f"{t['rare_knowledge']:.3f}",
                               f"{t['signal_share']:.2f}", f"{t['correct_per_tflop']:,.0f}"], (row, label, cell)
