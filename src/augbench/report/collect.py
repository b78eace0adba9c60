"""Finding the runs of a sweep folder and deciding which of them count.

Runs are found by globbing ``**/metrics.json``, so the folder nesting does not matter. A run
counts in a statistic when it completed, is the newest of its seed, and did not collapse (a
collapsed run, stuck at chance, is left out unless the user keeps it, and the report says so).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

from augbench.catalog import SPECS
from augbench.report.reference import AUGS
from augbench.report.stats import seed_key
from augbench.runs import collapse_reason

SWEEP = "cutmix_prob_sweep"


class NoRunsError(RuntimeError):
    """The folder holds no metrics.json at all."""


def num(v):
    """A finite float, or None."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _dict(d, key) -> dict:
    v = d.get(key) if isinstance(d, dict) else None
    return v if isinstance(v, dict) else {}


def _from_path(run_dir: Path, key: str):
    """Value of a Hydra-style `key=value` folder name, e.g. seed=3."""
    for part in reversed(run_dir.parts):
        if part.startswith(key + "="):
            return part[len(key) + 1:]
    return None


def _name(m: dict, cfg: dict, key: str) -> str:
    v = m.get(key)
    if v is None:  # older writers may only have the Hydra config group
        c = cfg.get(key)
        v = c.get("name") if isinstance(c, dict) else c
    return "?" if v is None else str(v)


def _seed(v):
    with contextlib.suppress(TypeError, ValueError):
        return int(v)
    return v


def _last(values):
    vals = [num(v) for v in values] if isinstance(values, list) else []
    vals = [v for v in vals if v is not None]
    return vals[-1] if vals else None


def _collapse(m: dict, data: str, history: dict | None, test_acc1) -> tuple[bool, str | None]:
    """The training's own flag when metrics.json has one; for older runs, the same rule
    recomputed from the final training loss and test accuracy."""
    if "collapsed" in m:
        flagged = bool(m["collapsed"])
        return flagged, (str(m.get("collapse_reason") or "flagged by training") if flagged else None)
    spec = SPECS.get(data)
    if spec is None or test_acc1 is None:
        return False, None
    why = collapse_reason(_last((history or {}).get("train_loss")), test_acc1, spec.num_classes)
    return why is not None, (f"{why} (recomputed: this run predates the flag)" if why else None)


def _read(mpath: Path) -> dict:
    try:
        m = json.loads(mpath.read_text())
        if not isinstance(m, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        m = {"status": "unreadable", "error": f"metrics.json: {e}"}
    return m


def collect_runs(folder) -> list[dict]:
    """One dict per `**/metrics.json` under folder, sorted by path.

    Keys: dir, rel, status, experiment, data, model, aug, seed, prob, alpha, test_acc1
    (fraction), error, history, sweep (belongs to the cutmix-probability sweep), mtime,
    collapsed, collapse_reason, label_noise (rate, 0 = clean labels), noise (metrics'
    label_noise block), eval (the evaluation suite's results, or None), warmup (LR warmup epochs)."""
    folder = Path(folder)
    runs = []
    for mpath in sorted(folder.glob("**/metrics.json")):
        run_dir, m = mpath.parent, _read(mpath)
        cfg = _dict(m, "config")
        aug_cfg, noise = _dict(cfg, "aug"), _dict(m, "label_noise")
        prob = aug_cfg.get("prob", m.get("prob", _from_path(run_dir, "prob")))
        seed = m.get("seed", cfg.get("seed", _from_path(run_dir, "seed")))
        data = _name(m, cfg, "data")
        history = m.get("history") if isinstance(m.get("history"), dict) else None
        test_acc1 = num(m.get("test_acc1"))
        done = m.get("status") == "completed" and test_acc1 is not None
        collapsed, why = _collapse(m, data, history, test_acc1) if done else (False, None)
        runs.append({
            "dir": run_dir,
            "rel": run_dir.relative_to(folder).as_posix(),
            "status": m.get("status"),
            "experiment": m.get("experiment"),
            "data": data,
            "model": _name(m, cfg, "model"),
            "aug": _name(m, cfg, "aug"),
            "seed": None if seed is None else _seed(seed),
            "prob": num(prob),
            "alpha": num(aug_cfg.get("alpha")),
            "test_acc1": test_acc1,
            "error": m.get("error"),
            "slurm_state": m.get("slurm_state"),
            "history": history,
            # whole folder names only: a substring test would catch e.g. pytest's test_cutmix_prob_sweep0
            "sweep": m.get("experiment") == SWEEP or SWEEP in run_dir.resolve().parts,
            "mtime": mpath.stat().st_mtime,
            "collapsed": collapsed,
            "collapse_reason": why,
            "label_noise": num(_dict(cfg, "data").get("label_noise", noise.get("rate"))) or 0.0,
            "noise": noise or None,
            "eval": m.get("eval") if isinstance(m.get("eval"), dict) else None,
            "warmup": num(_dict(cfg, "optim").get("warmup_epochs")) or 0.0,
            "device": m.get("device"),
            "wall_seconds": num(m.get("wall_seconds")),
            "hosts": sorted({a.get("host") for a in m.get("attempt_log", []) if isinstance(a, dict) and a.get("host")}),
            "started": min((a["started"] for a in m.get("attempt_log", []) if isinstance(a, dict) and a.get("started")),
                           default=None),
        })
    return runs


def completed(r: dict) -> bool:
    return r["status"] == "completed" and r["test_acc1"] is not None


def dedupe(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Keep one run per (experiment, cell, seed, prob, label noise, α under noise), the newest: a
    seed counted twice would shrink the interval for nothing. Returns (kept, dropped)."""
    best: dict = {}
    for r in runs:
        seed = r["seed"] if r["seed"] is not None else r["rel"]  # unknown seed: never merge
        key = (r["experiment"], r["data"], r["model"], r["aug"], seed, r["prob"] if r["sweep"] else None,
               r["label_noise"], r["alpha"] if r["label_noise"] else None)
        if key not in best or r["mtime"] > best[key]["mtime"]:
            best[key] = r
    keep = {id(r) for r in best.values()}
    return [r for r in runs if id(r) in keep], [r for r in runs if id(r) not in keep]


def table_runs(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(completed clean-label grid runs, newest per seed; the duplicates dropped). Sweep and
    label-noise runs have sections of their own."""
    return dedupe([r for r in runs if not r["sweep"] and not r["label_noise"] and completed(r)])


def split_collapsed(runs: list[dict], keep_collapsed: bool) -> tuple[list[dict], list[dict]]:
    """(runs that count, collapsed runs left out)."""
    if keep_collapsed:
        return list(runs), []
    return [r for r in runs if not r["collapsed"]], [r for r in runs if r["collapsed"]]


def rank(name: str, known) -> tuple:
    """Known names in study order, unknown ones after them, sorted."""
    return (0, known.index(name), "") if name in known else (1, 0, name)


def regimes(runs) -> list[str]:
    """The study's five regimes first, then every other regime the runs hold, sorted."""
    return list(AUGS) + sorted({r["aug"] for r in runs} - set(AUGS))


def by_seed(runs: list[dict], value) -> dict:
    """{seed: value(run)} over runs whose value is not None."""
    out = {}
    for r in sorted(runs, key=lambda r: seed_key(r["seed"] if r["seed"] is not None else r["rel"])):
        v = value(r)
        if v is not None:
            out[r["seed"] if r["seed"] is not None else r["rel"]] = v
    return out


def describe(r: dict) -> str:
    return f"`{r['rel']}` ({r['data']}/{r['model']}/{r['aug']} seed {r['seed']})"
