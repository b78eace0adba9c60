"""``python -m augbench.evaluate RUN_OR_GRID [eval=full] [eval.KEY=VALUE ...]``: the evaluation suite
on the final weights of finished runs, from their checkpoints, without retraining.

Given a grid folder it evaluates every completed run below it, one after another; a run already
evaluated with the same suite is skipped, so an interrupted pass is resumed by running it again.
Each run's metrics.json gets ``eval`` (and ``config.eval`` records the suite), written atomically.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from augbench.errors import ConfigError, DatasetError, RunLockedError
from augbench.runs import LAST, METRICS, read_metrics, write_metrics

log = logging.getLogger("augbench")
CONF = Path(__file__).resolve().parents[2] / "conf"  # the checkout's configs, as train.py reads them


def suite_config(overrides: list[str]) -> DictConfig:
    """The ``eval`` group composed as ``train.py`` would, with the same checks."""
    from hydra import compose, initialize_config_dir

    from augbench.config import validate

    bad = [o for o in overrides if not o.lstrip("+~").startswith("eval")]
    if bad:
        raise ConfigError(f"only eval=... and eval.KEY=VALUE overrides apply here, not {' '.join(bad)}")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    validate(cfg)
    return cfg.eval


def run_folders(path: Path) -> list[Path]:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if (path / METRICS).is_file():
        return [path]
    found = sorted(p.parent for p in path.rglob(METRICS))
    if not found:
        raise FileNotFoundError(f"no runs under {path}: no metrics.json anywhere below it")
    return found


def needs_eval(metrics: dict, suite: dict) -> str | None:
    """Why this run is to be evaluated now, or None to skip it."""
    if metrics.get("status") != "completed":
        return None
    done = metrics.get("eval")
    if done and not metrics.get("eval_error") and metrics.get("config", {}).get("eval") == suite:
        return None
    return "never evaluated" if not done else "evaluated with another suite" if not metrics.get("eval_error") else "its evaluation failed"


def evaluate_run(folder: Path, eval_cfg: DictConfig, device) -> dict:
    """Load the run's final weights and data, run the suite, record it; returns the suite's results."""
    from hydra.utils import instantiate

    from augbench.module import Classifier
    from augbench.runlock import RunLock

    metrics = read_metrics(folder)
    ckpt = folder / LAST
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt} is missing: the run's final weights are needed (they are never deleted "
                                "by augbench; was the folder copied without checkpoints?)")
    config = OmegaConf.create(metrics["config"])
    lock = {"stale_after_s": OmegaConf.select(config, "run_lock.stale_after_s", default=600),  # older runs lack it
            "heartbeat_s": OmegaConf.select(config, "run_lock.heartbeat_s", default=30)}
    with RunLock(folder, **lock):
        model = Classifier.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False,
                                                channels_last=device.type == "cuda")
        dm = instantiate(config.data)
        dm.load()
        suite = instantiate(eval_cfg)
        results = suite.run(model, dm, folder, device)
        metrics = read_metrics(folder)  # unchanged while we held the lock; re-read to write the newest
        metrics["eval"] = results
        metrics.pop("eval_error", None)
        metrics["config"]["eval"] = OmegaConf.to_container(eval_cfg, resolve=True)
        write_metrics(folder, metrics)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m augbench.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("path", type=Path, help="a run folder (holding metrics.json and last.ckpt) or a grid folder")
    p.add_argument("overrides", nargs="*", help="eval=standard|full|accuracy and eval.KEY=VALUE")
    p.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when visible, else cpu)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        eval_cfg = suite_config(a.overrides)
        folders = run_folders(a.path)
    except (ConfigError, FileNotFoundError) as e:
        print(f"augbench.evaluate: {e}", file=sys.stderr)
        return 2
    wanted = OmegaConf.to_container(eval_cfg, resolve=True)
    todo = [(f, why) for f in folders if (why := needs_eval(read_metrics(f) or {}, wanted))]
    skipped = len(folders) - len(todo)
    print(f"augbench.evaluate: suite {eval_cfg.name}: {len(todo)} runs to evaluate, {skipped} skipped "
          "(not completed, or already evaluated with this suite)", flush=True)
    if not todo:
        return 0
    import torch

    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    failed = []
    for i, (folder, why) in enumerate(todo, 1):
        start = time.monotonic()
        try:
            evaluate_run(folder, eval_cfg, device)
            print(f"[{i}/{len(todo)}] {folder}: evaluated ({why}) in {time.monotonic() - start:.1f} s", flush=True)
        except (FileNotFoundError, DatasetError, RunLockedError, ValueError, RuntimeError) as e:
            failed.append(folder)
            print(f"[{i}/{len(todo)}] {folder}: not evaluated: {e}", file=sys.stderr, flush=True)
    if failed:
        print(f"augbench.evaluate: {len(failed)} of {len(todo)} runs could not be evaluated (listed above); "
              "the others are recorded. Fix the cause and run the same command again", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
