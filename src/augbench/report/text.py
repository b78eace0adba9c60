"""The prose of report.md: findings computed from Table 1 and its tests, the collapsed runs,
and what is missing. A difference is called real only when its Holm-adjusted test says so."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from augbench.report.collect import completed, describe, rank
from augbench.report.reference import AUGS, STUDY, STUDY_ROWS
from augbench.report.significance import BASE, p_holm, significant_sentence
from augbench.report.stats import seed_key
from augbench.report.tables import plural
from augbench.runs import describe_status


def _versus_base(s: dict, row, aug) -> str:
    """What the test of aug against baseline_plus in this row says, in a few words."""
    c = next((c for c in s["comparisons"] if c["row"] == row and c["aug"] == aug and c["ref"] == BASE), None)
    if c is None:
        return ""
    if c["p"] is None:
        return f"; {aug} vs {BASE}: untested ({c['note']})"
    verdict = f"significantly {c['direction']}" if c["significant"] else "not significantly different"
    return f"; {aug} vs {BASE}: {verdict} ({p_holm(c['p_holm'])}, n = {c['n']})"


def findings(s: dict) -> str:
    """One paragraph computed from the summary: winners by mean and margins, what the paired tests
    say, win counts, mean gain over baseline_plus, agreement with the study."""
    cells, rows = s["cells"], s["rows"]
    per_row, wins, gains = [], Counter(), defaultdict(list)
    agree = compared = 0
    for d, m in rows:
        row = [cells[d, m, a] for a in s["augs"] if cells[d, m, a]["n"]]
        bp = cells[d, m, BASE]
        if bp["n"]:
            for c in row:
                if c["aug"] != BASE:
                    gains[c["aug"]].append(c["mean"] - bp["mean"])
        if len(row) < 2:
            continue
        w, r2 = sorted(row, key=lambda c: -c["mean"])[:2]  # stable: regime order breaks ties
        wins[w["aug"]] += 1
        t = f"on {d}/{m} {w['aug']} wins with {w['mean']:.2f}%"
        if bp["n"] and BASE not in (w["aug"], r2["aug"]):
            t += f", {w['mean'] - bp['mean']:+.2f} over {BASE}"
        t += f" and {w['mean'] - r2['mean']:+.2f} over the runner-up {r2['aug']}"
        if w["ci"] is not None and r2["ci"] is not None and w["mean"] - w["ci"] <= r2["mean"] + r2["ci"]:
            t += " (their intervals overlap)"
        t += _versus_base(s, (d, m), r2["aug"] if w["aug"] == BASE else w["aug"])
        per_row.append(t)
        if (d, m) in STUDY_ROWS and all(cells[d, m, a]["n"] for a in AUGS):
            compared += 1
            agree += w["aug"] == max(AUGS, key=lambda a: STUDY[d, m, a][0])
    if not per_row and not any(c["n"] for c in cells.values()):
        return "No completed grid runs yet, so there are no findings.\n"
    out = []
    if per_row:
        out.append("Winners are by mean; whether a gap is real is said only by the paired tests. "
                   "Per row, " + "; ".join(per_row) + ".")
        out.append(f"Across {plural(sum(wins.values()), 'row')} with at least two regimes, wins: "
                   + ", ".join(f"{a} {k}" for a, k in wins.most_common()) + ".")
    else:
        out.append("No row has two regimes finished yet, so there are no winners.")
    out.append(significant_sentence(s["comparisons"]))
    if gains:
        out.append(f"Mean gain over {BASE} (points, over rows where both finished): "
                   + ", ".join(f"{a} {np.mean(g):+.2f} ({plural(len(g), 'row')})"
                               for a, g in sorted(gains.items(), key=lambda kv: rank(kv[0], AUGS))) + ".")
    deltas = [c for c in cells.values() if c["delta"] is not None]
    if deltas:
        worst = max(deltas, key=lambda c: abs(c["delta"]))
        out.append(f"Against the study's Table 1 the mean |Δ| is {np.mean([abs(c['delta']) for c in deltas]):.2f} "
                   f"points over {len(deltas)} cells (mean signed Δ {np.mean([c['delta'] for c in deltas]):+.2f}; "
                   f"largest {worst['data']}/{worst['model']}/{worst['aug']} {worst['delta']:+.2f})"
                   + (f", and our winner matches the study's in {agree} of {compared} complete rows."
                      if compared else "."))
    return " ".join(out) + "\n"


def collapsed_md(runs: list[dict], keep_collapsed: bool) -> list[str]:
    """Every completed run that collapsed, why, and what the report did with it."""
    bad = [r for r in runs if completed(r) and r["collapsed"]]
    if not bad:
        return []
    what = ("kept in every mean, interval and test, as asked (--keep-collapsed)" if keep_collapsed else
            "left out of every mean, interval and test; --keep-collapsed keeps them")
    lines = [f"{plural(len(bad), 'completed run')} collapsed (training never left chance level): {what}. "
             "A collapsed run pulls a cell's mean far below what its regime does and inflates its interval.", ""]
    lines += [f"- {describe(r)}: {r['collapse_reason']}" for r in bad]
    return lines + [""]


def missing(runs: list[dict], s: dict) -> list[str]:
    lines = []
    grid_done = [c for c in s["cells"].values() if c["n"]]
    max_n = max((c["n"] + c["left_out"] for c in grid_done), default=0)
    collapsed = defaultdict(list)
    if not s["keep_collapsed"]:
        for r in s["collapsed"]:
            collapsed[r["data"], r["model"], r["aug"]].append(r["seed"])
    all_seeds = sorted({x for c in grid_done for x in c["seeds"]} | {x for v in collapsed.values() for x in v},
                       key=seed_key)
    for (d, m), a in ((r, a) for r in s["rows"] for a in s["augs"]):
        c, col = s["cells"][d, m, a], collapsed[d, m, a]
        notes = [f"seed{'s' if len(col) > 1 else ''} {', '.join(map(str, col))} collapsed, left out"] if col else []
        if c["n"] == 0:
            lines.append(f"- {d}/{m}/{a}: no completed run" + (f" ({notes[0]})" if notes else ""))
        elif c["n"] < max_n:
            gone = [x for x in all_seeds if x not in c["seeds"] and x not in col]
            notes = ([f"missing seeds {', '.join(map(str, gone))}"] if gone else []) + notes
            lines.append(f"- {d}/{m}/{a}: {c['n']} of {max_n} seeds" + (f" ({'; '.join(notes)})" if notes else ""))
    absent = [f"{d}/{m}" for d, m in STUDY_ROWS if (d, m) not in s["rows"]]
    if absent and any(row in STUDY_ROWS for row in s["rows"]):  # a partial study grid, not another dataset
        lines.append(f"- study rows with no run at all: {', '.join(absent)}")
    failed = [r for r in runs if r["status"] == "failed"]
    if failed:
        lines.append(f"\n**Failed runs ({len(failed)}), excluded from the statistics:**\n")
        lines += [f"- {describe(r)}: {describe_status(r)}" for r in failed]
    unfinished = [r for r in runs if r["status"] != "failed" and not completed(r)]
    if unfinished:
        lines.append(f"\n**Unfinished runs ({len(unfinished)}):**\n")
        lines += [f"- {describe(r)}: " + ("completed, but no test_acc1" if r["status"] == "completed" else
                                          describe_status(r)) for r in unfinished]
    if s["duplicates"]:
        lines.append(f"\n**Duplicate seeds ignored ({len(s['duplicates'])}; the newest run of each was kept):**\n")
        lines += [f"- {describe(r)}" for r in s["duplicates"]]
    return lines or ["Nothing missing: every cell has the same number of seeds and no run failed or is unfinished."]


def provenance(runs: list[dict]) -> str:
    """Where and how long the completed runs trained: devices, hosts, summed run time, first start."""
    done = [r for r in runs if r["status"] == "completed"]
    if not done:
        return ""
    devices = Counter(r["device"] or "unknown device" for r in done)
    hosts = sorted({h for r in done for h in r["hosts"]})
    seconds = sum(r["wall_seconds"] or 0.0 for r in done)
    starts = sorted(r["started"] for r in done if r["started"])
    return ("Trained on " + ", ".join(f"{d} ({plural(k, 'run')})" for d, k in devices.most_common())
            + (f", host {', '.join(hosts)}" if hosts else "")
            + f"; {seconds / 3600:.2f} h of run time in all (training and evaluation, summed over runs)"
            + (f", the first started {starts[0]}." if starts else "."))
