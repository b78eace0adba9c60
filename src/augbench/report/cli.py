"""`python -m augbench.report GRID_DIR`: every table, figure and report.md from a sweep folder.

Every output is written to a temporary file in the output folder and moved into place with
``os.replace``, so a reader never sees a half-written file.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

from augbench.report.collect import NoRunsError, collect_runs, completed, split_collapsed, table_runs
from augbench.report.curves import METRIC_NAMES, plot_curves, plot_prob, row_curves
from augbench.report.figures import safe
from augbench.report.label_noise import (label_noise_csv, label_noise_figures, label_noise_md,
                                         summarise_label_noise)
from augbench.report.robustness import eval_runs, robustness_csv, robustness_md, summarise_robustness
from augbench.report.robustness_figures import robustness_figures, run_figure_links
from augbench.report.significance import significance_csv, significance_md
from augbench.report.stats import CI_LABELS, check_ci
from augbench.report.tables import cell_text, plural, summarise, summarise_prob_sweep, table_csv, table_md, table_tex
from augbench.report.text import collapsed_md, findings, missing, provenance
from augbench.runs import atomic_write


def _figures_md(made: list, level: str = "###") -> list[str]:
    return [f"{level} {caption}\n\n![{caption}]({name})\n" for caption, name in made]


def _robustness(runs, out, rb, keep_collapsed, put, written, augs) -> list[str]:
    """robustness.md/.csv, the robustness figures, and the report's section."""
    body = robustness_md(rb)
    put("robustness.md", "# Robustness\n\n" + body)
    put("robustness.csv", robustness_csv(rb))
    counted, _ = split_collapsed(eval_runs(runs), keep_collapsed)
    parts = ["## Robustness\n", body, "Also as [robustness.md](robustness.md) and [CSV](robustness.csv).\n"]
    for d, m in rb["rows"]:
        groups = defaultdict(list)
        for r in counted:
            if (r["data"], r["model"]) == (d, m):
                groups[r["aug"]].append(r)
        made = robustness_figures(out, d, m, {a: groups[a] for a in rb["augs"] if groups[a]}, augs)
        written.update({name: out / name for _, name in made})
        if made:
            parts += [f"### Figures: {d} / {m}\n", *_figures_md(made, "####")]
    links = run_figure_links(eval_runs(runs), out)
    if links:
        parts += ["### Each run's own figures\n", *links, ""]
    return parts


def write_report(folder, out=None, ci: str = "t", references=(), keep_collapsed: bool = False) -> dict[str, Path]:
    """Write the tables, significance tests, curves, robustness and label-noise sections and
    report.md; returns {file name: path}. Raises NoRunsError when there is no metrics.json under
    folder, ValueError for a reference regime no run has."""
    check_ci(ci)
    folder = Path(folder)
    if not folder.is_dir():
        raise NoRunsError(f"{folder} is not a folder")
    runs = collect_runs(folder)
    if not runs:
        raise NoRunsError(f"no runs found: no metrics.json anywhere under {folder}")
    unknown = [x for x in references if x not in {r["aug"] for r in runs}]
    if unknown:
        raise ValueError(f"--reference {', '.join(unknown)}: no run has that regime "
                         f"(regimes found: {', '.join(sorted({r['aug'] for r in runs}))})")
    out = Path(out) if out is not None else folder
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def put(name: str, text: str) -> None:
        atomic_write(out / name, lambda fh: fh.write(text.encode()))
        written[name] = out / name

    s = summarise(runs, ci, keep_collapsed, references)
    put("table1.md", table_md(s))
    put("table1.csv", table_csv(s))
    put("table1.tex", table_tex(s))
    rb = summarise_robustness(runs, ci, keep_collapsed)
    ln = summarise_label_noise(runs, ci, keep_collapsed)
    put("significance.csv", significance_csv(s["comparisons"] + (rb["comparisons"] if rb else [])
                                             + (ln["comparisons"] if ln else [])))

    counted, _ = split_collapsed(table_runs(runs)[0], keep_collapsed)
    curve_md, no_hist = [], []
    for d, m in s["rows"]:
        metric, series = row_curves([r for r in counted if (r["data"], r["model"]) == (d, m)])
        if not series:
            no_hist.append(f"{d}/{m}")
            continue
        name = f"curves_{safe(d)}_{safe(m)}.png"
        plot_curves(out / name, d, m, metric, series, s["augs"])
        written[name] = out / name
        curve_md.append(f"### {d} / {m} ({METRIC_NAMES[metric]} accuracy)\n\n![{d} {m}]({name})\n")

    sweep = summarise_prob_sweep(runs, ci, keep_collapsed)
    if len({p["prob"] for p in sweep}) > 1:
        plot_prob(out / "cutmix_prob.png", sweep, ci)
        written["cutmix_prob.png"] = out / "cutmix_prob.png"

    status = Counter("completed" if completed(r) else r["status"] if r["status"] == "failed" else "unfinished"
                     for r in runs)
    n_collapsed = sum(completed(r) and r["collapsed"] for r in runs)
    parts = [
        "# augbench report\n",
        f"Runs under `{folder}`: {len(runs)} found, {status['completed']} completed, "
        f"{status['failed']} failed, {status['unfinished']} unfinished"
        + (f"; {n_collapsed} of the completed collapsed ({'kept' if keep_collapsed else 'left out'}, "
           "see Collapsed runs)." if n_collapsed else "."),
        f"Intervals are mean ± {s['ci_label']}.",
        provenance(runs) + "\n",
    ]
    exps = sorted({str(r["experiment"]) for r in table_runs(runs)[0]})
    if len(exps) > 1:
        parts.append(f"**Warning:** Table 1 pools runs from several experiments ({', '.join(exps)}).\n")
    warm = Counter(r["warmup"] for r in table_runs(runs)[0])
    if set(warm) - {0.0}:
        parts.append(("**Warning:** Table 1 pools runs with different" if len(warm) > 1 else "All Table 1 runs use a")
                     + " linear learning-rate warmup (optim.warmup_epochs: "
                     + ", ".join(f"{w:g} in {plural(k, 'run')}" for w, k in sorted(warm.items()))
                     + "); the study's protocol has none.\n")
    parts += ["## Table 1\n", table_md(s),
              "Also as [CSV](table1.csv) and [LaTeX](table1.tex); every test in "
              "[significance.csv](significance.csv).\n",
              "## Significance\n", significance_md(s["comparisons"]),
              "## Findings\n", findings(s), "## Learning curves\n"]
    parts += curve_md or ["_No per-epoch history in any completed run._\n"]
    if curve_md and no_hist:
        parts.append(f"No per-epoch history for: {', '.join(no_hist)}.\n")
    if rb:
        parts += _robustness(runs, out, rb, keep_collapsed, put, written, s["augs"])
    if ln:
        put("label_noise.csv", label_noise_csv(ln))
        made = label_noise_figures(out, ln)
        written.update({name: out / name for _, name in made})
        parts += ["## Label noise\n", label_noise_md(ln), "Also as [CSV](label_noise.csv).\n", *_figures_md(made)]
    if "cutmix_prob.png" in written:
        parts += ["## CutMix probability sweep\n", "![cutmix prob sweep](cutmix_prob.png)\n",
                  "| data | model | prob | accuracy (%) |", "|---|---|---|---|"]
        parts += [f"| {p['data']} | {p['model']} | {p['prob']:g} | " + cell_text(p) + " |" for p in sweep]
        parts.append("")
    if n_collapsed:
        parts += ["## Collapsed runs\n", *collapsed_md(runs, keep_collapsed)]
    parts += ["## Missing\n", *missing(runs, s), ""]
    put("report.md", "\n".join(parts))
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m augbench.report",
                                description="Summarise an augbench sweep folder into Table 1, significance tests, "
                                            "curves, robustness and label-noise sections, and report.md.")
    p.add_argument("folder", type=Path, help="folder searched recursively for */metrics.json")
    p.add_argument("--ci", choices=sorted(CI_LABELS), default="t",
                   help="t: 95%% t-interval of the mean (default); normal: the study's 1.96·s")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: FOLDER)")
    p.add_argument("--reference", action="append", default=[], metavar="NAME",
                   help="also test every regime against this one (repeatable; baseline_plus always is)")
    p.add_argument("--keep-collapsed", action="store_true",
                   help="keep collapsed runs (stuck at chance) in means, intervals and tests")
    a = p.parse_args(argv)
    try:
        written = write_report(a.folder, a.out, a.ci, a.reference, a.keep_collapsed)
    except (NoRunsError, ValueError) as e:
        print(f"augbench.report: {e}", file=sys.stderr)
        return 2
    for path in written.values():
        print(path)
    return 0


