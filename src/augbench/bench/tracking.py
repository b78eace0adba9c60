"""The tracked kernel count: ``benchmarks/kernels.json`` holds the kernels per training step of every
backbone × regime, and a fresh count is compared with it like a test: a cell that grew is a regression.

    python -m augbench.bench --check-kernels     # exit 1 when a cell grew
    python -m augbench.bench --update-kernels    # rewrite the file from the current code
"""

from __future__ import annotations

import json
from pathlib import Path

from augbench.bench.kernels import __doc__ as RULE_DOC
from augbench.bench.projection import PHASES, run_settings

KERNELS_FILE = Path(__file__).resolve().parents[3] / "benchmarks" / "kernels.json"
REFRESH = "python -m augbench.bench --update-kernels"


def counts_doc(measured: dict) -> dict:
    """What the tracked file holds: per backbone × regime, the kernels in all and per phase."""
    rule = RULE_DOC.split("The rule (``kernels_of``):")[1].split("Bytes per op")[0].strip()
    return {"what": "kernels one training step would launch on a GPU, counted on the CPU by the rule of "
                    "augbench.bench.kernels (a projection's input, not a GPU measurement)",
            "refresh": REFRESH, "settings": run_settings(), "rule": " ".join(rule.split()),
            "counts": {m: {r: {"kernels": c["kernels"], "phases": {p: c["phases"][p]["kernels"]
                                                                  for p in PHASES if p in c["phases"]}}
                           for r, c in cells.items()} for m, cells in measured.items()}}


def load(path: Path = KERNELS_FILE) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def compare(fresh: dict, committed: dict | None) -> dict:
    """Cells that grew, shrank, or are new, with the phases that moved."""
    out = {"grew": [], "shrank": [], "new": [], "same": 0}
    old = (committed or {}).get("counts", {})
    for m, cells in fresh["counts"].items():
        for r, c in cells.items():
            before = old.get(m, {}).get(r)
            if before is None:
                out["new"].append({"cell": f"{m}/{r}", "kernels": c["kernels"]})
                continue
            delta = c["kernels"] - before["kernels"]
            if delta == 0:
                out["same"] += 1
                continue
            phases = {p: c["phases"].get(p, 0) - before["phases"].get(p, 0) for p in PHASES}
            row = {"cell": f"{m}/{r}", "before": before["kernels"], "now": c["kernels"], "delta": delta,
                   "phases": {p: d for p, d in phases.items() if d}}
            out["grew" if delta > 0 else "shrank"].append(row)
    return out


def describe(diff: dict) -> list[str]:
    lines = []
    for kind, word in (("grew", "REGRESSION: more kernels per step"), ("shrank", "fewer kernels per step")):
        for row in diff[kind]:
            moved = ", ".join(f"{p} {d:+d}" for p, d in row["phases"].items())
            lines.append(f"{word}: {row['cell']}: {row['before']} -> {row['now']} ({row['delta']:+d}; {moved})")
    for row in diff["new"]:
        lines.append(f"not tracked yet: {row['cell']} ({row['kernels']} kernels)")
    if diff["grew"] or diff["shrank"] or diff["new"]:
        lines.append(f"if the change is intended, refresh the tracked counts: {REFRESH}")
    else:
        lines.append(f"kernel counts match {KERNELS_FILE.name} ({diff['same']} cells)")
    return lines


def write(doc: dict, path: Path = KERNELS_FILE) -> None:
    """Merges ``doc``'s cells into the file (a partial count updates only its cells)."""
    old = load(path)
    if old is not None:
        merged = old.get("counts", {})
        for m, cells in doc["counts"].items():
            merged.setdefault(m, {}).update(cells)
        doc = doc | {"counts": merged}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
