"""``python -m augbench.bench``."""

from augbench.bench.cli import main

if __name__ == "__main__":
    main()
