"""Which differences are real: each regime against baseline_plus (and any --reference), paired
over seeds, with Holm's correction across the comparisons of one row.

A comparison is a dict: row, aug, ref, metric, n, seeds, diff (mean of aug − ref over the
shared seeds), t, p, p_holm, significant, direction ("better"/"worse"/None), note.
"""

from __future__ import annotations

import csv
import io

from augbench.report.stats import ALPHA, holm, paired_test

BASE = "baseline_plus"
MARK = {"better": "▲", "worse": "▼"}
TEX_MARK = {"better": r"$^\uparrow$", "worse": r"$^\downarrow$"}


def mark_legend(ref: str = BASE) -> str:
    return (f"▲/▼: significantly better/worse than {ref} (two-sided paired t-test over the seeds both have, "
            f"Holm-adjusted across the row, p < {ALPHA:g})")


def compare_row(values: dict, refs, row, metric: str = "test_acc1", higher_is_better: bool = True) -> list[dict]:
    """values: {aug: {seed: value}} for one row. Every aug with runs against every reference
    (itself excepted); Holm's adjustment over all of the row's tests together."""
    comps = []
    for ref in refs:
        for aug, vals in values.items():
            if aug == ref or not vals:
                continue
            res = paired_test(vals, values.get(ref) or {})
            if not values.get(ref):
                res["note"] = f"no completed {ref} run in this row"
            comps.append({"row": tuple(row), "aug": aug, "ref": ref, "metric": metric, **res})
    for c, adj in zip(comps, holm([c["p"] for c in comps])):
        c["p_holm"] = adj
        c["significant"] = adj is not None and adj < ALPHA
        c["direction"] = None
        if c["significant"]:
            c["direction"] = "better" if (c["diff"] > 0) == higher_is_better else "worse"
    return comps


def marks(comps: list[dict], ref: str = BASE) -> dict:
    """{(row, aug): "better"|"worse"} for the significant comparisons against ref."""
    return {(c["row"], c["aug"]): c["direction"] for c in comps if c["ref"] == ref and c["direction"]}


def fmt_p(p) -> str:
    return "—" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def p_holm(p) -> str:
    """``p_Holm = 0.030`` or ``p_Holm < 0.001``, for running text."""
    text = fmt_p(p)
    return f"p_Holm < {text[1:]}" if text.startswith("<") else f"p_Holm = {text}"


def verdict(c: dict) -> str:
    if c["p"] is None:
        return f"n/a: {c['note']}"
    if c["direction"]:
        return f"{c['direction']} {MARK[c['direction']]}"
    return "not significant"


def significance_csv(comps: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["metric", "data", "model", "label_noise", "aug", "reference", "n", "seeds", "mean_diff", "t",
                "p", "p_holm", "significant", "direction", "note"])
    r6 = lambda x: "" if x is None else round(x, 6)  # noqa: E731
    for c in comps:
        data, model, *noise = c["row"]  # label-noise rows carry their rate
        w.writerow([c["metric"], data, model, noise[0] if noise else 0, c["aug"], c["ref"], c["n"],
                    ";".join(map(str, c["seeds"])),
                    r6(c["diff"]), r6(c["t"]), r6(c["p"]), r6(c["p_holm"]), int(c["significant"]),
                    c["direction"] or "", c["note"]])
    return buf.getvalue()


def significance_md(comps: list[dict], unit: str = "points") -> str:
    """A table per row: every comparison with its mean paired difference, n, raw and Holm p."""
    if not comps:
        return "_No row has a reference regime and another regime to test against it._\n"
    lines = [f"Two-sided paired t-test over the seeds both regimes have (same seed = same initialisation "
             f"and split). Holm's correction runs over all comparisons of a row; a difference is called "
             f"real only when the Holm-adjusted p is below {ALPHA:g}. Δ = regime − reference, in {unit}.", ""]
    for row in dict.fromkeys(c["row"] for c in comps):
        lines += [f"**{' / '.join(row)}**", "", "| regime | vs | n | mean Δ | p | p (Holm) | verdict |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {c['aug']} | {c['ref']} | {c['n']} | {'—' if c['diff'] is None else format(c['diff'], '+.2f')} "
                  f"| {fmt_p(c['p'])} | {fmt_p(c['p_holm'])} | {verdict(c)} |" for c in comps if c["row"] == row]
        lines.append("")
    return "\n".join(lines)


def significant_sentence(comps: list[dict], what: str = "Table 1") -> str:
    """One sentence listing the differences that survive Holm's correction, and no others."""
    real = [c for c in comps if c["significant"]]
    tested = sum(c["p"] is not None for c in comps)
    if not tested:
        return f"No difference in {what} could be tested (each needs at least 2 shared seeds)."
    if not real:
        return (f"None of the {tested} tested differences in {what} is significant at {ALPHA:g} after Holm's "
                "correction: with these seeds, the gaps above may be noise.")
    items = [f"{c['aug']} {c['direction']} than {c['ref']} on {'/'.join(c['row'])} ({c['diff']:+.2f}, "
             f"{p_holm(c['p_holm'])}, n = {c['n']})" for c in real]
    return (f"{len(real)} of {tested} tested differences in {what} are significant at {ALPHA:g} after Holm's "
            f"correction: {'; '.join(items)}. The others may be noise at this number of seeds.")
