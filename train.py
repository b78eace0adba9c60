"""augbench training entry point.

    python train.py model=resnet18 aug=cutmix
    python train.py --multirun seed=0-4
    python train.py --multirun experiment=grid
"""

import sys

import hydra
from omegaconf import DictConfig

from augbench.cli import one_line_errors
from augbench.sweep import CLI_ERRORS, run_job


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> dict | None:
    try:
        return run_job(cfg)  # a sweep reads it: a run left to another process is named in the summary
    except CLI_ERRORS as e:
        sys.exit(f"augbench: {e}")  # one line that says what to fix; no traceback


if __name__ == "__main__":
    with one_line_errors():
        main()
