"""Summarise a sweep: Table 1 (md/csv/tex) with paired significance tests, learning curves, the
robustness and label-noise sections, the CutMix-probability sweep, and a report.md listing the
collapsed runs, the gaps, and findings computed from the numbers.

    python -m augbench.report multirun/ [--ci t|normal] [--out DIR] [--reference NAME]... [--keep-collapsed]

The modules, in the order data flows through them:
- collect: find the runs (``**/metrics.json``), flag collapsed ones, keep the newest per seed;
- stats, significance: intervals, the paired t-test over seeds, Holm's correction, the marks;
- tables: Table 1 and the probability-sweep table; robustness, label_noise: their sections;
- curves, figures, robustness_figures: every plot; text: findings and what is missing;
- cli: write_report and the command line. Nothing here imports torch or Lightning.
"""

from augbench.report.cli import main, write_report
from augbench.report.collect import SWEEP, NoRunsError, collect_runs
from augbench.report.curves import METRIC_NAMES, run_curves
from augbench.report.figures import aggregate_curves
from augbench.report.reference import AUGS, DATASETS, MIXUP_TABLE2, MODELS, STUDY
from augbench.report.significance import compare_row
from augbench.report.stats import CI_LABELS, band, holm, mean_ci, paired_test, t_value
from augbench.report.tables import summarise, summarise_prob_sweep, table_csv, table_md, table_tex
from augbench.report.text import findings

__all__ = ["AUGS", "CI_LABELS", "DATASETS", "METRIC_NAMES", "MIXUP_TABLE2", "MODELS", "STUDY", "SWEEP",
           "NoRunsError", "aggregate_curves", "band", "collect_runs", "compare_row", "findings", "holm", "main",
           "mean_ci", "paired_test", "run_curves", "summarise", "summarise_prob_sweep", "t_value", "table_csv",
           "table_md", "table_tex", "write_report"]
