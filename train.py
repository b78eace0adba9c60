"""augbench training entry point.

    python train.py model=resnet18 aug=cutmix
    python train.py --multirun seed=range(5)
    python train.py --multirun experiment=grid
"""

import sys

import hydra
from omegaconf import DictConfig

from augbench.sweep import USER_ERRORS, run_job


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run_job(cfg)
    except USER_ERRORS as e:
        sys.exit(f"augbench: {e}")  # one line that says what to fix; no traceback


if __name__ == "__main__":
    main()
