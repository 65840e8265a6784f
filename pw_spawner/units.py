"""Units of the admin's and the user's job values: memory sizes and walltimes, read and written.

Memory is kept in MiB (``16G`` is 16384), walltimes in seconds. Each reader raises ValueError with
a reason fit to show after the key it was read from.
"""

from __future__ import annotations

import re
from typing import Any

#: What a memory size looks like (for the JSON Schema): 16G, 16GB, 512M, 1.5T, or a number of MiB.
MEMORY_PATTERN = r"^\s*\d{1,12}(\.\d{1,6})?\s*[kKmMgGtT]?[iI]?[bB]?\s*$"
#: Slurm's --time formats: MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
WALLTIME_PATTERN = r"^\s*(\d+-)?\d+(:\d+){0,2}\s*$"


def parse_memory_mb(value: Any) -> int:
    """Memory as MiB from ``16G``, ``16GB``, ``512M``, ``1T`` or a bare number of MiB."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 16G, got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be positive")
        return value
    text = str(value)
    # A size has a few digits: anything longer (a 1 MB string of digits) is refused before parsing.
    match = re.fullmatch(r"\s*(\d{1,12}(?:\.\d{1,6})?)\s*([kmgt]?)i?b?\s*", text[:64], re.IGNORECASE)
    if not match or len(text) > 64:
        raise ValueError(f"expected a size like 16G or 512M, got {text[:20]!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    factor = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024 * 1024}[unit]
    mb = int(number * factor)
    if mb <= 0:
        raise ValueError("must be at least 1M")
    return mb


def format_memory(mb: int) -> str:
    """The shortest exact spelling: 16384 -> ``16G``, 1536 -> ``1536M``."""
    return f"{mb // 1024}G" if mb % 1024 == 0 else f"{mb}M"


_SLURM_TIME = re.compile(r"(?:(?P<days>\d+)-)?(?P<rest>\d+(?::\d+){0,2})")


def parse_walltime(value: Any) -> int:
    """Seconds from a walltime string in one of Slurm's ``--time`` formats.

    ``MINUTES``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM`` and ``D-HH:MM:SS``. A number is
    refused: YAML 1.1 reads an unquoted ``4:00:00`` as the base-60 integer 14400, so a number
    here is most likely a walltime that lost its quotes (``hours:`` takes a number of hours).
    Fields after the first must be below 60 (24 for hours after a day), catching typos.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"got the number {value!r} (YAML reads an unquoted 4:00:00 as "
                           'the number 14400): quote it, as in walltime: "04:00:00", or give hours: '
                           "for a number of hours")
    if not isinstance(value, str):
        raise ValueError(f'expected a quoted duration like "04:00:00", got {value!r}')
    text = value.strip()
    match = _SLURM_TIME.fullmatch(text)
    if not match:
        raise ValueError(f"expected MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM or "
                           f"D-HH:MM:SS, got {value!r}")
    parts = [int(p) for p in match.group("rest").split(":")]
    if match.group("days") is not None:
        days = int(match.group("days"))
        hours, minutes, secs = [*parts, 0, 0][:3]  # D-HH, D-HH:MM, D-HH:MM:SS
        limits = [(hours, 24), (minutes, 60), (secs, 60)][:len(parts)]
    else:
        days = 0
        if len(parts) == 3:  # HH:MM:SS
            hours, minutes, secs = parts
        else:  # MINUTES, MM:SS
            hours, minutes, secs = 0, parts[0], parts[1] if len(parts) == 2 else 0
        limits = [(p, 60) for p in parts[1:]]
    for number, limit in limits:
        if number >= limit:
            raise ValueError(f"{value!r}: {number} is out of range in that position")
    seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    if seconds <= 0:
        raise ValueError("must be positive")
    return seconds


def hours_to_seconds(value: Any) -> int:
    """A job's ``hours:`` (a number, ``1.5`` is 1 h 30 min) as seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number of hours, got {value!r}")
    seconds = round(value * 3600)
    if seconds <= 0:
        raise ValueError("must be positive")
    return seconds


def format_hours(seconds: int) -> str:
    """A walltime as the hours field shows it: ``4``, ``1.5``, ``0.3333`` (close enough to round back)."""
    return f"{seconds / 3600:.4f}".rstrip("0").rstrip(".")


def format_walltime(seconds: int) -> str:
    """``HH:MM:SS`` (hours may exceed 24), which Slurm and PBS both read."""
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


__all__ = ["MEMORY_PATTERN", "WALLTIME_PATTERN", "format_hours", "format_memory", "format_walltime",
           "hours_to_seconds", "parse_memory_mb", "parse_walltime"]
