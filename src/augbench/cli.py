"""The command line's error reports: one line that says what to fix, no traceback.

Hydra reports a config it cannot compose (an unknown option, a misspelled key) over a dozen lines:
the message, the list of options one per line, its config search path and a hint about
HYDRA_FULL_ERROR. ``one_line_errors`` folds those reports into one line that keeps what matters
(which key, which options); ``HYDRA_FULL_ERROR=1`` still shows everything.
"""

from __future__ import annotations

from contextlib import contextmanager


def fold(message: str, cause: BaseException | None = None) -> str:
    """Hydra's multi-line composition error as one line: options joined, search path dropped."""
    head, options = [], []
    for line in message.splitlines():
        if line.startswith("Config search path"):
            break
        if line.startswith("\t") or line.startswith("    "):
            options.append(line.strip())
        elif line.strip():
            head.append(line.strip().rstrip(".:") if options == [] else line.strip())
    text = ". ".join(head)
    if options:
        text += ": " + ", ".join(options)
    if cause is not None and "not in struct" in str(cause):
        text = text.replace(". To append to your config use", ": no such key (misspelled?); to add a new key use")
    elif cause is not None and str(cause).strip():
        text += f" ({str(cause).splitlines()[0].strip()})"
    return "augbench: " + text


@contextmanager
def one_line_errors():
    """Around ``hydra.main``: composition errors reach the user as one line (exit code 1, as Hydra's)."""
    import os
    import sys

    import hydra._internal.utils as hydra_utils
    from hydra.errors import CompactHydraException

    report = hydra_utils.run_and_report

    def run_and_report(func):
        def folded():
            try:
                return func()
            except CompactHydraException as e:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                sys.exit(fold(str(e), e.__cause__))  # SystemExit: Hydra's report (and its hint) is skipped

        return report(folded)

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = report
