"""augbench training entry point.

    python train.py model=resnet18 aug=cutmix
    python train.py --multirun seed=range(5)
    python train.py --multirun experiment=grid
"""

import hydra
from omegaconf import DictConfig

from augbench.sweep import run_job


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_job(cfg)


if __name__ == "__main__":
    main()
