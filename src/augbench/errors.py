"""The mistakes a user can make in asking for a run. Each is reported as one line that says what to
fix, with no traceback, and stops a sweep at once (every later job would hit it too), except
``RunLockedError``, which a sweep answers by leaving the run to its owner.

Plain exceptions in a module of their own: the CLI catches them without importing torch.
"""


class ConfigError(ValueError):
    """A config value is wrong; the message names the key."""


class DatasetError(RuntimeError):
    """A dataset is missing, unreadable or corrupt; the message says where and what to do."""


class RunExistsError(RuntimeError):
    """A completed run with a different config already owns the output folder."""


class RunLockedError(RuntimeError):
    """Another live process is training in this run folder; the message names the folder and owner."""

    def __init__(self, message: str, owner: str | None = None):
        super().__init__(message)
        self.owner = owner  # e.g. "pid 4242 on host node7, since 2026-11-25 15:30:02 UTC"
