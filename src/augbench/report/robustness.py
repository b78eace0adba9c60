"""The robustness table: the evaluation suite's results (metrics.json["eval"]) per
(data, model, regime), mean ± CI over seeds, one narrow table per metric (rows data/model,
columns regimes), each regime tested against baseline_plus in the metric's own direction
(lower ECE and NLL are better)."""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from dataclasses import dataclass

from augbench.report.collect import num, regimes, split_collapsed, table_runs
from augbench.report.significance import BASE, compare_row, mark_legend, marks
from augbench.report.stats import CI_LABELS
from augbench.report.tables import make_cell, plural, regime_table_md, row_order


@dataclass(frozen=True)
class Metric:
    key: str
    family: str
    label: str
    higher_is_better: bool
    path: tuple
    scale: float = 100.0  # fractions in metrics.json, shown in %
    digits: int = 2

    def value(self, run: dict):
        d = run.get("eval")
        for k in self.path:
            if not isinstance(d, dict) or k not in d:
                return None
            d = d[k]
        v = num(d)
        return None if v is None else self.scale * v


SCALARS = (
    Metric("ece", "Calibration", "ECE (%, 15 bins)", False, ("calibration", "ece")),
    Metric("nll", "Calibration", "NLL (nats)", False, ("calibration", "nll"), scale=1.0, digits=3),
    Metric("fgsm_1", "FGSM", "accuracy under FGSM at ε = 1/255 (%)", True, ("fgsm", "1/255")),
    Metric("fgsm_8", "FGSM", "accuracy under FGSM at ε = 8/255 (%)", True, ("fgsm", "8/255")),
    Metric("occlusion_center_16", "Occlusion", "accuracy with the central 16×16 square zeroed (%)", True,
           ("occlusion_center", "16")),
    Metric("occlusion_boundary_16", "Occlusion", "accuracy with all but the central 16×16 square zeroed (%)",
           True, ("occlusion_boundary", "16")),
    Metric("corruption_mean", "Corruption", "mean accuracy over the corruptions and severities (%)", True,
           ("corruption_mean_acc",)),
)
FAMILIES = ("Calibration", "FGSM", "Occlusion", "OOD detection", "Corruption")


def ood_metrics(runs) -> list[Metric]:
    sets = sorted({s for r in runs for s in ((r["eval"] or {}).get("ood") or {})})
    return [Metric(f"ood_auroc_{s}", "OOD detection", f"OOD AUROC, test set vs {s} (%, max-softmax score)", True,
                   ("ood", s, "auroc")) for s in sets]


def eval_runs(runs: list[dict]) -> list[dict]:
    """The Table 1 runs (clean labels, completed, newest per seed) that carry an evaluation."""
    return [r for r in table_runs(runs)[0] if r["eval"]]


def summarise_robustness(runs: list[dict], ci: str = "t", keep_collapsed: bool = False) -> dict | None:
    """{"metrics", "rows", "augs", "cells": {metric key: {(d, m, a): cell}}, "comparisons",
    "sources" (corruption sources, counted), "suites", "left_out"}; None without any evaluation."""
    done = eval_runs(runs)
    if not done:
        return None
    metrics = [m for m in (*SCALARS, *ood_metrics(done)) if any(m.value(r) is not None for r in done)]
    rows = row_order((r["data"], r["model"]) for r in done)
    augs = [a for a in regimes(done) if any(r["aug"] == a for r in done)]
    groups = defaultdict(list)
    for r in done:
        groups[r["data"], r["model"], r["aug"]].append(r)
    cells, comps = {}, []
    for metric in metrics:
        mc = cells[metric.key] = {}
        for d, m in rows:
            for a in augs:
                if groups.get((d, m, a)):
                    mc[d, m, a] = make_cell(*split_collapsed(groups[d, m, a], keep_collapsed), metric.value, ci)
            row_comps = compare_row({a: mc[d, m, a]["values"] for a in augs if (d, m, a) in mc}, [BASE],
                                    (d, m), metric.key, metric.higher_is_better)
            for (row, aug), direction in marks(row_comps).items():
                mc[(*row, aug)]["mark"] = direction
            comps += row_comps
    return {"metrics": metrics, "rows": rows, "augs": augs, "cells": cells, "comparisons": comps, "ci": ci,
            "sources": Counter(str(r["eval"]["corruption_source"]) for r in done if r["eval"].get("corruption_source")),
            "suites": Counter(str(r["eval"].get("suite", "?")) for r in done),
            "left_out": sum(r["collapsed"] for r in done) if not keep_collapsed else 0}


def _source_note(rb: dict) -> str:
    if not rb["sources"]:
        return ""
    srcs = "; ".join(f"{s} ({n} runs)" for s, n in rb["sources"].most_common())
    note = f"Corruption source, as each run stored it: {srcs}."
    if any(s.lower().startswith("procedural") for s in rb["sources"]):
        note += " Procedural corruptions are generated on the fly; they are not the published CIFAR-10-C files."
    if len(rb["sources"]) > 1:
        note += " **Warning:** the runs used different sources, so their corruption accuracies do not compare."
    return note


def robustness_md(rb: dict, level: str = "###") -> str:
    """The tables, grouped by metric family; a regime column only where it has evaluated runs."""
    suites = ", ".join(f"{s} ({n} runs)" for s, n in rb["suites"].most_common())
    out = [f"Measured by the evaluation suite on each run's final weights (suite: {suites}), on the clean test "
           f"set unless said otherwise. Cells: mean ± {CI_LABELS[rb['ci']]} (n = seeds). {mark_legend()}; "
           "the direction is the metric's own: for ECE and NLL, lower is better, so ▲ means lower."
           + (f" {plural(rb['left_out'], 'collapsed run')} left out." if rb["left_out"] else ""), ""]
    for family in FAMILIES:
        ms = [m for m in rb["metrics"] if m.family == family]
        if not ms:
            continue
        out.append(f"{level} {family}\n")
        for m in ms:
            legend = f"**{m.label}**, {'higher' if m.higher_is_better else 'lower'} is better."
            out.append(regime_table_md(rb["rows"], rb["augs"], rb["cells"][m.key], legend, m.digits))
        if family == "Corruption" and _source_note(rb):
            out.append(_source_note(rb) + "\n")
    return "\n".join(out)


def robustness_csv(rb: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["metric", "label", "higher_is_better", "data", "model", "aug", "mean", "ci", "n", "seeds",
                "collapsed_left_out", "vs_baseline_plus", "p_holm_vs_baseline_plus"])
    holm = {(c["metric"], c["row"], c["aug"]): c["p_holm"] for c in rb["comparisons"]}
    r4 = lambda x: "" if x is None else round(x, 6)  # noqa: E731
    for m in rb["metrics"]:
        for (d, mo, a), c in rb["cells"][m.key].items():
            w.writerow([m.key, m.label, int(m.higher_is_better), d, mo, a, r4(c["mean"]), r4(c["ci"]), c["n"],
                        ";".join(map(str, c["seeds"])), c["left_out"], c["mark"] or "",
                        r4(holm.get((m.key, (d, mo), a)))])
    return buf.getvalue()
