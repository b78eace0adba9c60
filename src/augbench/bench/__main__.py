"""``python -m augbench.bench``."""

import sys

from augbench.bench.cli import main

if __name__ == "__main__":
    result = main()
    sys.exit(result if isinstance(result, int) else 0)
