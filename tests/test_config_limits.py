"""The [server] limits: defaults, the file, the environment, and what is refused."""

from __future__ import annotations

import pathlib

import pytest

from swarmproxy.config import ConfigError, from_dict, load

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "config.example.toml"


def test_defaults() -> None:
    server = from_dict({}).server
    assert server.max_json_body == 16 * 1024 * 1024
    assert server.max_line_size == 64 * 1024
    assert server.max_field_size == 256 * 1024
    assert server.head_timeout == 60.0
    assert server.idle_timeout == 120.0


def test_the_example_file_gives_the_defaults() -> None:
    example, defaults = load(EXAMPLE, env={}).server, from_dict({}).server
    for key in ("max_json_body", "max_line_size", "max_field_size", "head_timeout", "idle_timeout"):
        assert getattr(example, key) == getattr(defaults, key), key


def test_set_in_the_file_and_the_environment() -> None:
    server = from_dict(
        {"server": {"max_json_body": 1024, "head_timeout": 2, "idle_timeout": 0.5}}
    ).server
    assert (server.max_json_body, server.head_timeout, server.idle_timeout) == (1024, 2.0, 0.5)
    assert isinstance(server.head_timeout, float)
    env = {
        "SWARMPROXY_SERVER_MAX_LINE_SIZE": "4096",
        "SWARMPROXY_SERVER_MAX_FIELD_SIZE": "8192",
        "SWARMPROXY_SERVER_IDLE_TIMEOUT": "30",
    }
    server = load(env=env).server
    assert (server.max_line_size, server.max_field_size, server.idle_timeout) == (4096, 8192, 30.0)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("max_json_body", 0, "whole number"),
        ("max_json_body", -1, "whole number"),
        ("max_json_body", 1.5, "whole number"),
        ("max_json_body", "1M", "whole number"),
        ("max_line_size", True, "whole number"),
        ("max_field_size", 0, "whole number"),
        ("head_timeout", 0, "positive number of seconds"),
        ("head_timeout", "soon", "positive number of seconds"),
        ("idle_timeout", -5, "positive number of seconds"),
        ("idle_timeout", float("inf"), "positive number of seconds"),
    ],
)
def test_bad_values_name_their_key(key: str, value: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        from_dict({"server": {key: value}})
    assert raised.value.key == f"server.{key}"


def test_a_bad_value_in_the_environment_names_its_variable() -> None:
    with pytest.raises(ConfigError, match="whole number") as raised:
        load(env={"SWARMPROXY_SERVER_MAX_JSON_BODY": "lots"})
    assert raised.value.key == "server.max_json_body"
