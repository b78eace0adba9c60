"""Corrupted labels (the mixup paper's experiment): runs with data.label_noise > 0, kept out of
Table 1. Per (data, model, noise rate): best and last test error per regime (mixup split by α),
tested against ERM, next to the paper's Table 2; and the memorisation curves (training accuracy on
the clean vs the corrupted subset, and test accuracy, per epoch)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

from augbench.report.collect import completed, dedupe, num, rank, split_collapsed
from augbench.report.curves import history_pairs
from augbench.report.figures import BAND_NOTE, EPOCHS, draw_mean, finish, new_fig, palette, safe, save_fig
from augbench.report.reference import AUGS, DATASETS, MIXUP_TABLE2, MIXUP_TABLE2_SETUP, MODELS
from augbench.report.significance import ALPHA, compare_row, marks
from augbench.report.stats import CI_LABELS
from augbench.report.tables import make_cell, marked, plural

ERM = ("baseline_plus", "baseline")  # the paper's ERM: no mixing, standard crop/flip
COLUMNS = (("best", "best test error (%)"), ("last", "last test error (%)"),
           ("noisy_fit", "train acc. on corrupted labels, last epoch (%)"))
CURVES = (("train_clean_acc1", "training accuracy, clean-label subset"),
          ("train_noisy_acc1", "training accuracy, corrupted subset (vs the noisy label)"),
          ("test_acc1", "test accuracy"))


def best_error(r):
    """100·(1 − the best test accuracy over epochs), from the per-epoch history; None without it."""
    accs = [v for v in map(num, (r["history"] or {}).get("test_acc1") or []) if v is not None]
    return 100.0 * (1.0 - max(accs)) if accs else None


def last_error(r):
    return 100.0 * (1.0 - r["test_acc1"])


def noisy_fit(r):
    accs = [v for v in map(num, (r["history"] or {}).get("train_noisy_acc1") or []) if v is not None]
    return 100.0 * accs[-1] if accs else None


VALUES = {"best": best_error, "last": last_error, "noisy_fit": noisy_fit}


def regime(r: dict, split_alpha: set) -> str:
    """The aug's name, with its α when it is a mixup regime (or several α of it were run)."""
    if r["alpha"] is not None and ("mixup" in r["aug"] or r["aug"] in split_alpha):
        return f"{r['aug']} α={r['alpha']:g}"
    return r["aug"]


def _order(label: str) -> tuple:
    aug, _, alpha = label.partition(" α=")
    return (*rank(aug, AUGS), float(alpha) if alpha else 0.0)


def summarise_label_noise(runs: list[dict], ci: str = "t", keep_collapsed: bool = False) -> dict | None:
    """{"groups": {(data, model, rate): {"regimes": [labels], "erm": label|None, "cells":
    {label: {column: cell}}, "effective": [rates], "left_out": k}}, "comparisons", "ci"}."""
    done, _ = dedupe([r for r in runs if r["label_noise"] and not r["sweep"] and completed(r)])
    if not done:
        return None
    alphas = defaultdict(set)
    for r in done:
        alphas[r["aug"]].add(r["alpha"])
    split_alpha = {a for a, s in alphas.items() if len(s) > 1}
    by = defaultdict(lambda: defaultdict(list))
    for r in done:
        by[r["data"], r["model"], r["label_noise"]][regime(r, split_alpha)].append(r)
    groups, comps = {}, []
    for key in sorted(by, key=lambda k: (rank(k[0], DATASETS), rank(k[1], MODELS), k[2])):
        labels = sorted(by[key], key=_order)
        g = groups[key] = {"regimes": labels, "erm": next((e for e in ERM if e in labels), None), "cells": {},
                           "effective": [], "left_out": 0, "runs": {}}
        for label in labels:
            kept, out = split_collapsed(by[key][label], keep_collapsed)
            g["cells"][label] = {col: make_cell(kept, out, fn, ci) for col, fn in VALUES.items()}
            g["runs"][label] = kept
            g["effective"] += [v for r in kept if (v := num((r["noise"] or {}).get("effective_rate"))) is not None]
            g["left_out"] += len(out)
        if g["erm"]:
            for col in ("best", "last"):  # each column its own Holm family
                cs = compare_row({lb: g["cells"][lb][col]["values"] for lb in labels}, [g["erm"]],
                                 (key[0], key[1], f"{key[2]:g}"), f"{col}_test_error", higher_is_better=False)
                for (_, lb), direction in marks(cs).items():
                    g["cells"][lb][col]["mark"] = direction
                comps += cs
    return {"groups": groups, "comparisons": comps, "ci": ci}


def _paper(rate: float) -> str:
    rows = MIXUP_TABLE2.get(round(rate, 2))
    if not rows:
        return (f"The mixup paper's Table 2 has no {100 * rate:g}% row (it reports 20%, 50% and 80%).")
    return (f"For comparison only, **the mixup paper's Table 2** at {100 * rate:g}% noise ({MIXUP_TABLE2_SETUP}; "
            "a different setup from these runs), test error best / last (%): "
            + "; ".join(f"{name} {b:.1f} / {last:.1f}" for name, b, last in rows) + ".")


def label_noise_md(ln: dict, level: str = "###") -> str:
    out = [f"Runs trained with a fraction of their training labels replaced by uniformly drawn labels (any of "
           f"the K classes); they are not pooled into Table 1. Test error = 100 − accuracy: *best* is the "
           f"lowest over epochs (test evaluated every epoch), *last* at the final epoch. Mean ± "
           f"{CI_LABELS[ln['ci']]}. ▲/▼: significantly lower/higher error than ERM (paired t-test over shared "
           f"seeds, Holm-adjusted within the column, p < {ALPHA:g}).", ""]
    for (d, m, rate), g in ln["groups"].items():
        eff = (f", effective rate {100 * sum(g['effective']) / len(g['effective']):.1f}% (replacements that drew "
               "the true label change nothing)") if g["effective"] else ""
        out += [f"{level} {d} / {m}, {100 * rate:g}% label noise{eff}\n",
                "| regime | " + " | ".join(t for _, t in COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
        for label in g["regimes"]:
            cells = g["cells"][label]
            name = f"{label} (ERM)" if label == g["erm"] else label
            out.append(f"| {name} | " + " | ".join(marked(cells[c]) for c, _ in COLUMNS) + " |")
        if g["left_out"]:
            out.append(f"\n{plural(g['left_out'], 'collapsed run')} left out of this table.")
        out += ["", _paper(rate), ""]
    return "\n".join(out)


def label_noise_csv(ln: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["data", "model", "label_noise", "regime", "n", "seeds", "best_error_mean", "best_error_ci",
                "last_error_mean", "last_error_ci", "noisy_train_acc_mean", "vs_erm_best", "vs_erm_last",
                "collapsed_left_out"])
    r4 = lambda x: "" if x is None else round(x, 4)  # noqa: E731
    for (d, m, rate), g in ln["groups"].items():
        for label in g["regimes"]:
            c = g["cells"][label]
            w.writerow([d, m, rate, label, c["last"]["n"], ";".join(map(str, c["last"]["seeds"])),
                        r4(c["best"]["mean"]), r4(c["best"]["ci"]), r4(c["last"]["mean"]), r4(c["last"]["ci"]),
                        r4(c["noisy_fit"]["mean"]), c["best"]["mark"] or "", c["last"]["mark"] or "",
                        c["last"]["left_out"]])
    return buf.getvalue()


def label_noise_figures(out: Path, ln: dict) -> list:
    """One figure per (data, model, rate): clean-subset, corrupted-subset and test accuracy per
    epoch, a line per regime. Returns [(caption, file name)]."""
    made = []
    for (d, m, rate), g in ln["groups"].items():
        colors = palette(g["regimes"])
        fig, axes = new_fig(13, 4.4, 3)
        drew = False
        for ax, (key, title) in zip(axes, CURVES):
            for label, rs in g["runs"].items():
                cs = [c for r in rs if (c := history_pairs((r["history"] or {}).get("epoch"),
                                                           (r["history"] or {}).get(key))) is not None]
                if cs:
                    name = f"{label} (ERM)" if label == g["erm"] else label
                    draw_mean(ax, cs, f"{name} (n={len(cs)})", colors[label])
                    drew = True
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(EPOCHS)
            ax.set_ylabel("top-1 accuracy (%)")
            ax.set_ylim(-2, 102)
        if not drew:
            continue
        finish(fig, axes, f"{d} / {m}, {100 * rate:g}% label noise: mean over seeds\n{BAND_NOTE}", legend_below=True)
        name = f"label_noise_{safe(d)}_{safe(m)}_{safe(f'{rate:g}')}.png"
        save_fig(fig, out / name)
        made.append((f"{d} / {m}, {100 * rate:g}% noise: memorisation of the corrupted labels (training accuracy "
                     "on the clean and the corrupted subsets, un-augmented; test accuracy)", name))
    return made
