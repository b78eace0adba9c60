import sys

from augbench.report.cli import main

sys.exit(main())
