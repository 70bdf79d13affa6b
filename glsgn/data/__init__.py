"""Data: synthesis of degradations, paired datasets as they ship, preparation and loading."""

from __future__ import annotations

import zlib

__all__ = ["task_key"]

# The built-in tasks keep the keys they were seeded with when they were the only four, so
# their data stay bit for bit what they were; any other name is keyed by its CRC-32.
_BUILT_IN = {"reflection": 0, "rain": 1, "haze": 2, "lowlight": 3}


def task_key(task: str) -> int:
    """A task's stable part of every seed drawn for its data."""
    return _BUILT_IN.get(task, zlib.crc32(task.encode()))
