"""swarmproxy.cluster.versions: API version arithmetic and the daemon's version complaints."""

from __future__ import annotations

import pytest

from swarmproxy.cluster.versions import (
    FALLBACK_API_VERSION,
    FALLBACK_MIN_API_VERSION,
    check_request_version,
    highest,
    lowest,
    parse,
)


@pytest.mark.parametrize(
    ("version", "parsed"),
    [
        ("1.41", (1, 41)),
        ("1.5", (1, 5)),
        ("1.12", (1, 12)),
        ("1.0", (1, 0)),
        ("2.3", (2, 3)),
        ("1", (1, 0)),
        ("1.", (1, 0)),
    ],
)
def test_parse(version: str, parsed: tuple[int, int]) -> None:
    assert parse(version) == parsed


def test_parse_compares_minor_versions_as_numbers() -> None:
    assert parse("1.5") < parse("1.12") < parse("1.41") < parse("1.100") < parse("2.0")


@pytest.mark.parametrize("version", ["", "abc", "1.x", "v1.41"])
def test_parse_rejects_garbage(version: str) -> None:
    with pytest.raises(ValueError):
        parse(version)


def test_fallbacks() -> None:
    assert FALLBACK_API_VERSION == "1.41"
    assert FALLBACK_MIN_API_VERSION == "1.12"


def test_lowest_and_highest_compare_numerically() -> None:
    versions = ["1.41", "1.9", "1.43", "1.12"]
    assert lowest(versions, "1.0") == "1.9"
    assert highest(versions, "1.0") == "1.43"


def test_lowest_and_highest_skip_unknown_versions() -> None:
    assert lowest(["", "1.43", "", "1.41"], "9.9") == "1.41"
    assert highest(["1.24", "", "1.12"], "0.1") == "1.24"


@pytest.mark.parametrize("versions", [[], [""], ["", ""]])
def test_lowest_and_highest_default_without_known_versions(versions: list[str]) -> None:
    assert lowest(versions, FALLBACK_API_VERSION) == "1.41"
    assert highest(versions, FALLBACK_MIN_API_VERSION) == "1.12"


def test_lowest_and_highest_take_any_iterable() -> None:
    assert lowest((v for v in ["1.44", "1.41"]), "x") == "1.41"
    assert highest(iter(["1.44", "1.41"]), "x") == "1.44"


def test_single_version() -> None:
    assert lowest(["1.43"], "1.41") == "1.43"
    assert highest(["1.43"], "1.41") == "1.43"


def test_too_new_matches_the_daemon() -> None:
    assert check_request_version("1.99", "1.41", "1.12") == (
        "client version 1.99 is too new. Maximum supported API version is 1.41",
        "",
    )


def test_too_old_matches_the_daemon() -> None:
    assert check_request_version("1.5", "1.41", "1.12") == (
        "",
        "client version 1.5 is too old. Minimum supported API version is 1.12, "
        "please upgrade your client to a newer version",
    )


def test_versions_are_compared_as_numbers_not_strings() -> None:
    # As strings "1.5" > "1.12" and "1.100" < "1.41".
    assert check_request_version("1.5", "1.41", "1.12")[1] != ""
    assert check_request_version("1.100", "1.41", "1.12")[0] != ""
    assert check_request_version("1.9", "1.41", "1.9") == ("", "")


@pytest.mark.parametrize("requested", ["1.12", "1.13", "1.24", "1.40", "1.41"])
def test_versions_within_bounds_are_accepted(requested: str) -> None:
    assert check_request_version(requested, "1.41", "1.12") == ("", "")


def test_equal_bounds_accept_exactly_that_version() -> None:
    assert check_request_version("1.41", "1.41", "1.41") == ("", "")
    assert check_request_version("1.42", "1.41", "1.41")[0].startswith(
        "client version 1.42 is too new"
    )
    assert check_request_version("1.40", "1.41", "1.41")[1].startswith(
        "client version 1.40 is too old"
    )


def test_messages_repeat_the_requested_text() -> None:
    too_new, _ = check_request_version("2", "1.41", "1.12")
    assert too_new == "client version 2 is too new. Maximum supported API version is 1.41"
    _, too_old = check_request_version("1.05", "1.41", "1.12")
    assert too_old.startswith(
        "client version 1.05 is too old. Minimum supported API version is 1.12"
    )
