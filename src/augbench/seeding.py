"""One seed drives everything: every random stream the project owns is derived from it."""

from __future__ import annotations

import zlib

import numpy as np


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed for the stream named by ``keys`` (e.g. ``("epoch", 3)``), independent of the others.

    Deriving streams from (seed, name, epoch, ...) instead of advancing one global generator means a
    resumed run sees exactly the draws an uninterrupted one would.
    """
    words = [int(seed) & 0xFFFFFFFF]
    for k in keys:
        words.append(zlib.crc32(k.encode()) if isinstance(k, str) else int(k) & 0xFFFFFFFF)
    return int(np.random.SeedSequence(words).generate_state(2, np.uint64)[0] >> np.uint64(1))
