from __future__ import annotations

import pytest

from vmbuild.config.units import parse_duration, parse_memory_mib, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (4096, 4096),
        ("8G", 8 * 1024**3),
        ("8GiB", 8 * 1024**3),
        ("512m", 512 * 1024**2),
        ("1.5G", 1536 * 1024**2),
        ("100", 100),
        ("100B", 100),
        ("2 T", 2 * 1024**4),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "8X", "-1G", "1.00001", True])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "mib"), [(2048, 2048), ("2G", 2048), ("512", 512), ("1.5G", 1536)]
)
def test_parse_memory(text, mib):
    assert parse_memory_mib(text) == mib


def test_parse_memory_rejects_partial_mib():
    with pytest.raises(ValueError, match="whole number of MiB"):
        parse_memory_mib("1000K")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (30, 30),
        ("45", 45),
        ("90s", 90),
        ("10m", 600),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("1d", 86400),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "10 minutes", "m", "5x", False])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)
