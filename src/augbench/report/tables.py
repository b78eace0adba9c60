"""Table 1 (md/csv/tex) and the CutMix-probability sweep table, built from the runs.

A cell holds the statistic of one (data, model, regime) over its seeds, with the collapsed
runs it left out counted, and the significance mark of its regime against baseline_plus.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict

from augbench.report.collect import by_seed, completed, dedupe, rank, regimes, split_collapsed, table_runs
from augbench.report.reference import AUGS, DATASETS, MODELS, STUDY
from augbench.report.significance import BASE, MARK, TEX_MARK, compare_row, mark_legend, marks
from augbench.report.stats import CI_LABELS, CI_TEX, check_ci, mean_ci, seed_key


def make_cell(kept: list[dict], left_out: list[dict], value, ci: str) -> dict:
    """Mean and interval over the kept runs' value(run) (None values skipped), keyed by seed for
    the paired tests; counts the collapsed runs left out, or kept (with --keep-collapsed)."""
    vals = by_seed(kept, value)
    mean, hw, n = mean_ci(vals.values(), ci)
    return {"n": n, "values": vals, "mean": mean if n else None, "ci": hw if n > 1 else None,
            "seeds": sorted((r["seed"] for r in kept if value(r) is not None), key=seed_key),
            "left_out": len(left_out), "collapsed_kept": sum(bool(r["collapsed"]) for r in kept), "mark": None}


def row_order(pairs) -> list:
    return sorted(set(pairs), key=lambda dm: (rank(dm[0], DATASETS), rank(dm[1], MODELS)))


def summarise(runs: list[dict], ci: str = "t", keep_collapsed: bool = False, references=()) -> dict:
    """Table 1 from the completed clean-label grid runs (no sweep, no label noise).

    Returns {"ci", "ci_label", "rows": [(data, model)], "augs", "cells": {(data, model, aug): cell},
    "duplicates", "comparisons", "references", "collapsed" (collapsed runs among them), "noisy"
    (label-noise runs, reported apart), "keep_collapsed"}; a cell (see make_cell) also has data,
    model, aug, study_mean, study_ci, delta (ours − study, points), best (highest mean in the row;
    ties all marked) and mark ("better"/"worse" than baseline_plus, significant after Holm)."""
    check_ci(ci)
    grid = [r for r in runs if not r["sweep"] and not r["label_noise"]]
    done, dupes = table_runs(runs)
    rows = row_order((r["data"], r["model"]) for r in grid)
    augs = regimes(grid)
    refs = list(dict.fromkeys([BASE, *references]))
    by_cell = defaultdict(list)
    for r in done:
        by_cell[r["data"], r["model"], r["aug"]].append(r)
    cells, comps = {}, []
    for d, m in rows:
        for a in augs:
            c = make_cell(*split_collapsed(by_cell.get((d, m, a), []), keep_collapsed),
                          lambda r: 100.0 * r["test_acc1"], ci)
            study_mean, study_ci = STUDY.get((d, m, a), (None, None))
            cells[d, m, a] = c | {"data": d, "model": m, "aug": a, "study_mean": study_mean, "study_ci": study_ci,
                                  "delta": c["mean"] - study_mean if c["n"] and study_mean is not None else None,
                                  "best": False}
        row = [cells[d, m, a] for a in augs if cells[d, m, a]["n"]]
        if row:
            top = max(c["mean"] for c in row)
            for c in row:
                c["best"] = c["mean"] == top
        comps += compare_row({a: cells[d, m, a]["values"] for a in augs}, refs, (d, m))
    for (row, aug), direction in marks(comps).items():
        cells[(*row, aug)]["mark"] = direction
    return {"ci": ci, "ci_label": CI_LABELS[ci], "rows": rows, "augs": augs, "cells": cells,
            "duplicates": dupes, "comparisons": comps, "references": refs, "keep_collapsed": keep_collapsed,
            "collapsed": [r for r in done if r["collapsed"]],
            "noisy": [r for r in runs if r["label_noise"] and not r["sweep"]]}


def summarise_prob_sweep(runs: list[dict], ci: str = "t", keep_collapsed: bool = False) -> list[dict]:
    """Final test accuracy (%) per (data, model, cutmix prob) of the completed sweep runs."""
    check_ci(ci)
    done, _ = dedupe([r for r in runs if r["sweep"] and r["aug"] == "cutmix"
                      and completed(r) and r["prob"] is not None])
    groups = defaultdict(list)
    for r in done:
        groups[r["data"], r["model"], r["prob"]].append(r)
    out = []
    for (d, m, p) in sorted(groups, key=lambda k: (rank(k[0], DATASETS), rank(k[1], MODELS), k[2])):
        c = make_cell(*split_collapsed(groups[d, m, p], keep_collapsed), lambda r: 100.0 * r["test_acc1"], ci)
        out.append(c | {"data": d, "model": m, "prob": p})
    return out


# ----------------------------------------------------------------------------- rendering


def fmt(x, spec=".2f") -> str:
    return "—" if x is None else format(x, spec)


def plural(k: int, word: str) -> str:
    return f"{k} {word}{'' if k == 1 else 's'}"


def cell_text(c: dict, pm: str = "±", digits: int = 2) -> str:
    """"mean ± ci (n=…)", with the collapsed runs the cell left out (or kept) named."""
    notes = ([f"{plural(c['left_out'], 'collapsed run')} left out"] if c.get("left_out") else []) + \
            ([f"incl. {c['collapsed_kept']} collapsed"] if c.get("collapsed_kept") else [])
    if not c["n"]:
        return "—" + (f" ({', '.join(notes)})" if notes else "")
    text = f"{c['mean']:.{digits}f}" + ("" if c["ci"] is None else f" {pm} {c['ci']:.{digits}f}")
    return f"{text} ({', '.join(['n=' + str(c['n']), *notes])})"


def marked(c: dict, tex: bool = False, **kw) -> str:
    """The cell's text, bold when best in its row, followed by its significance mark."""
    if tex:
        t = "--" if not c["n"] else cell_text(c, pm=r"$\pm$", **kw)
        return (rf"\textbf{{{t}}}" if c.get("best") else t) + (TEX_MARK[c["mark"]] if c.get("mark") else "")
    t = cell_text(c, **kw)
    return (f"**{t}**" if c.get("best") else t) + (f" {MARK[c['mark']]}" if c.get("mark") else "")


def _left_out_note(s: dict) -> str:
    k = len(s["collapsed"])
    if not k:
        return ""
    if s["keep_collapsed"]:
        return f" {plural(k, 'collapsed run')} kept in (--keep-collapsed)."
    return f" {plural(k, 'collapsed run')} left out (see Collapsed runs; --keep-collapsed keeps them)."


def _delta_augs(s: dict) -> list[str]:
    """The Δ-to-the-study columns, only when some row is one of the study's (not for Fashion-MNIST)."""
    return list(AUGS) if any((d, m, a) in STUDY for d, m in s["rows"] for a in AUGS) else []


WIDE = 7  # more regimes than this (and no study columns): Table 1 is printed with a line per regime


def table_md(s: dict) -> str:
    augs, cells, deltas = s["augs"], s["cells"], _delta_augs(s)
    lines = [
        f"**Table 1.** Final-epoch test accuracy (%) over completed seeds: mean ± {s['ci_label']}. "
        f"**Bold**: best mean in the row. {mark_legend()}. —: no completed run."
        + (" Δ = ours − study (the study's Table 1), in accuracy points." if deltas else "") + _left_out_note(s)
        + (f" {plural(len(s['noisy']), 'label-noise run')} {'is' if len(s['noisy']) == 1 else 'are'} reported "
           "apart (see Label noise)." if s["noisy"] else ""),
        "",
        "| data | model | " + " | ".join([*augs, *(f"Δ {a}" for a in deltas)]) + " |",
        "|---|---|" + "---|" * (len(augs) + len(deltas)),
    ]
    if len(augs) > WIDE and not deltas and s["rows"]:
        # many regimes: one line per regime, one column per data/model pair, so the table stays readable
        lines[-2:] = ["| regime | " + " | ".join(f"{d} / {m}" for d, m in s["rows"]) + " |",
                      "|---|" + "---|" * len(s["rows"])]
        lines += [f"| {a} | " + " | ".join(marked(cells[d, m, a]) for d, m in s["rows"]) + " |" for a in augs]
        lines[0] = lines[0].replace("best mean in the row", "best mean in the column")
        return "\n".join(lines) + "\n"
    for d, m in s["rows"]:
        vals = [marked(cells[d, m, a]) for a in augs] + [fmt(cells[d, m, a]["delta"], "+.2f") for a in deltas]
        lines.append(f"| {d} | {m} | " + " | ".join(vals) + " |")
    if not s["rows"]:
        lines.append("\n_No clean-label grid runs (outside the cutmix probability sweep) were found._")
    return "\n".join(lines) + "\n"


def table_csv(s: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["data", "model", "aug", "mean", "ci", "ci_method", "n", "seeds", "study_mean", "study_ci",
                "delta", "best", "vs_baseline_plus", "collapsed_left_out", "collapsed_kept"])
    method = {"t": "t95", "normal": "1.96s"}[s["ci"]]
    r4 = lambda x: "" if x is None else round(x, 4)  # noqa: E731
    for d, m in s["rows"]:
        for a in s["augs"]:
            c = s["cells"][d, m, a]
            w.writerow([d, m, a, r4(c["mean"]), r4(c["ci"]), method, c["n"], ";".join(map(str, c["seeds"])),
                        r4(c["study_mean"]), r4(c["study_ci"]), r4(c["delta"]), int(c["best"]),
                        c["mark"] or "", c["left_out"], c["collapsed_kept"]])
    return buf.getvalue()


def tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        s = s.replace(a, b)
    return s


def table_tex(s: dict) -> str:
    augs, cells, deltas = s["augs"], s["cells"], _delta_augs(s)
    head = ["data", "model", *map(tex_escape, augs), *(rf"$\Delta$ {tex_escape(a)}" for a in deltas)]
    lines = [
        r"\begin{table}[t]", r"\centering",
        rf"\caption{{Final-epoch test accuracy (\%) over completed seeds: mean $\pm$ {CI_TEX[s['ci']]}. "
        r"Bold: best mean in the row; $^\uparrow$/$^\downarrow$: significantly better/worse than baseline\_plus "
        r"(paired $t$-test over shared seeds, Holm-adjusted across the row, $p<0.05$); --: no completed run"
        + (r"; $\Delta$ = ours $-$ study, in points.}" if deltas else ".}"),
        r"\label{tab:augbench-table1}",
        r"\begin{tabular}{ll|" + "c" * len(augs) + ("|" + "c" * len(deltas) if deltas else "") + "}",
        r"\hline", " & ".join(head) + r" \\", r"\hline",
    ]
    for d, m in s["rows"]:
        vals = [marked(cells[d, m, a], tex=True) for a in augs]
        vals += ["--" if cells[d, m, a]["delta"] is None else f"{cells[d, m, a]['delta']:+.2f}" for a in deltas]
        lines.append(" & ".join([tex_escape(d), tex_escape(m), *vals]) + r" \\")
    lines += [r"\hline", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def regime_table_md(rows, augs, cells, legend: str, digits: int = 2) -> str:
    """A narrow table: rows data/model, columns regimes; cells[(d, m, a)] as from make_cell."""
    if len(augs) > WIDE:  # a line per regime, as Table 1
        cell = lambda d, m, a: marked(cells[d, m, a], digits=digits) if (d, m, a) in cells else "—"  # noqa: E731
        lines = [legend.replace("best mean in the row", "best mean in the column"), "",
                 "| regime | " + " | ".join(f"{d} / {m}" for d, m in rows) + " |", "|---|" + "---|" * len(rows)]
        lines += [f"| {a} | " + " | ".join(cell(d, m, a) for d, m in rows) + " |" for a in augs]
        return "\n".join(lines) + "\n"
    lines = [legend, "", "| data | model | " + " | ".join(augs) + " |", "|---|---|" + "---|" * len(augs)]
    for d, m in rows:
        lines.append(f"| {d} | {m} | "
                     + " | ".join(marked(cells[d, m, a], digits=digits) if (d, m, a) in cells else "—" for a in augs)
                     + " |")
    return "\n".join(lines) + "\n"
