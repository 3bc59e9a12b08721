"""swarmproxy.cluster.timestamps: the daemon's RFC 3339 times as seconds since the epoch."""

from __future__ import annotations

import pytest

from swarmproxy.cluster.timestamps import parse_timestamp

T = 1_704_067_200  # 2024-01-01T00:00:00Z


def test_utc_with_z() -> None:
    """`Z` is UTC."""
    assert parse_timestamp("2024-01-01T00:00:00Z") == T


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T01:00:00+01:00", T),
        ("2023-12-31T19:00:00-05:00", T),
        ("2024-01-01T05:30:00+05:30", T),
        ("2024-01-01T00:00:00+00:00", T),
    ],
)
def test_offsets(text: str, expected: int) -> None:
    """A zone offset names the same instant as its UTC time."""
    assert parse_timestamp(text) == expected


def test_nine_fractional_digits() -> None:
    """Go's nanoseconds are kept past the microseconds Python's parser stops at."""
    assert parse_timestamp("2024-01-01T00:00:00.123456789Z") == pytest.approx(
        T + 0.123456789, abs=1e-6
    )
    assert parse_timestamp("2024-01-01T00:00:00.5Z") == T + 0.5
    assert parse_timestamp("2024-01-01T01:00:00.25+01:00") == T + 0.25


def test_sub_microsecond_digits_still_order_times() -> None:
    """Two times in the same microsecond (as Python would truncate them) keep their order
    when they are apart by more than a float's precision at this magnitude."""
    earlier = parse_timestamp("2024-01-01T00:00:00.000001100Z")
    later = parse_timestamp("2024-01-01T00:00:00.000001900Z")
    assert earlier < later


def test_no_fraction_and_surrounding_space() -> None:
    """No fractional part is a whole second; surrounding whitespace is ignored."""
    assert parse_timestamp("  2024-01-01T00:00:00Z\n") == T


def test_go_zero_time() -> None:
    """Go's zero time (`0001-01-01T00:00:00Z`, a field never set) parses too."""
    assert parse_timestamp("0001-01-01T00:00:00Z") == -62_135_596_800


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "2024-01-01",
        "2024-01-01T00:00:00",  # no zone
        "2024-01-01 00:00:00Z",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00Z",
        "2024-01-01T00:00:00+0100",
        "2024-13-01T00:00:00Z",  # month 13
        "2024-02-30T00:00:00Z",
        "1704067200",
    ],
)
def test_invalid_times_raise_value_error(text: str) -> None:
    """Anything not an RFC 3339 time is a ValueError."""
    with pytest.raises(ValueError):
        parse_timestamp(text)
