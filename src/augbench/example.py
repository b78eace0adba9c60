"""``python -m augbench.example SWEEP_DIR OUT``: publish a finished sweep as a committed example.

Writes the report (tables, significance, robustness, label noise, curves) into OUT and copies every
run's metrics.json into ``OUT/runs/<run>/``; checkpoints and TensorBoard logs stay behind. Run folders
that the sweep no longer holds are removed from ``OUT/runs`` so the copy matches the report.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from augbench.report import NoRunsError, write_report
from augbench.runs import METRICS, atomic_write


def publish(sweep: Path, out: Path) -> list[Path]:
    """The report into ``out`` and the runs' metrics.json under ``out/runs``; returns what was written."""
    written = list(write_report(sweep, out).values())
    runs_dir = out / "runs"
    keep = set()
    for src in sorted(sweep.rglob(METRICS)):
        rel = src.parent.relative_to(sweep)
        dst = runs_dir / rel / METRICS
        dst.parent.mkdir(parents=True, exist_ok=True)
        data = src.read_bytes()
        atomic_write(dst, lambda fh: fh.write(data))
        keep.add(dst.parent)
        written.append(dst)
    for old in sorted(runs_dir.rglob(METRICS)):
        if old.parent not in keep:
            shutil.rmtree(old.parent)
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m augbench.example", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", type=Path, help="the sweep folder, e.g. multirun/fashion_example")
    p.add_argument("out", type=Path, help="where the example lives, e.g. docs/example")
    a = p.parse_args(argv)
    try:
        written = publish(a.sweep, a.out)
    except (NoRunsError, ValueError) as e:
        print(f"augbench.example: {e}", file=sys.stderr)
        return 2
    print(f"augbench.example: {len(written)} files written under {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
