"""Units of job values: memory sizes and Slurm-style walltimes, read as admins and users write them."""

from __future__ import annotations

import pytest

from pw_spawner.units import parse_memory_mb, parse_walltime


@pytest.mark.parametrize(("text", "mb"), [("16G", 16384), ("16gb", 16384), ("512M", 512), ("1T", 1048576),
                                          (2048, 2048), ("1.5G", 1536)])
def test_memory_units(text, mb):
    assert parse_memory_mb(text) == mb


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 5400),                  # MINUTES
    ("30:00", 1800),               # MM:SS
    ("04:00:00", 14400),           # HH:MM:SS
    ("36:00:00", 36 * 3600),
    ("2-12", (2 * 24 + 12) * 3600),  # D-HH
    ("1-04:30", 28 * 3600 + 1800),  # D-HH:MM, not MM:SS
    ("1-00:00:00", 86400),         # D-HH:MM:SS
])
def test_walltime_follows_slurm_time_formats(text, seconds):
    assert parse_walltime(text) == seconds


@pytest.mark.parametrize("value", [14400, 4, 1.5])
def test_walltime_number_must_be_quoted(value):
    with pytest.raises(ValueError, match=r'quote it, as in walltime: "04:00:00"'):
        parse_walltime(value)


@pytest.mark.parametrize("text", ["4h", "1:2:3:4", "1-", "04:60:00", "1-24", "00:00", ""])
def test_walltime_refused(text):
    with pytest.raises(ValueError):
        parse_walltime(text)
