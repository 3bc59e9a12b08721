"""swarmproxy.config: the TOML file, SWARMPROXY_<SECTION>_<KEY> variables, validation."""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from swarmproxy import config as config_module
from swarmproxy.config import (
    DEFAULT_LISTEN,
    Config,
    ConfigError,
    NodeConfig,
    default_node_name,
    from_dict,
    load,
    parse_node,
)
from tests.rig.certs import Authority, Issued

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.toml"


def write(tmp_path: Path, text: str, name: str = "swarmproxy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_error(call: Any, *args: Any, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        call(*args, **kwargs)
    return info.value


def assert_defaults(config: Config) -> None:
    assert config.server.listen == [DEFAULT_LISTEN] == ["tcp://127.0.0.1:2375"]
    assert config.server.name == socket.gethostname()
    assert config.storage.url == "memory://"
    assert config.storage.prefix == "swarmproxy:"
    assert config.scheduler.strategy == "round-robin"
    assert config.health.interval == 5.0
    assert config.health.timeout == 3.0
    assert config.log.level == "info"
    assert config.log.format == "text"
    assert config.nodes == []


# --- the example file and defaults -------------------------------------------------------


def test_example_file_loads_with_every_value() -> None:
    config = load(EXAMPLE, env={})

    assert config.server.listen == ["tcp://127.0.0.1:2375"]
    # `name` is commented out in the example: this host's name.
    assert config.server.name == socket.gethostname()
    assert config.storage.url == "memory://"
    assert config.storage.prefix == "swarmproxy:"
    assert config.scheduler.strategy == "round-robin"
    assert config.health.interval == 5.0
    assert isinstance(config.health.interval, float)
    assert config.health.timeout == 3.0
    assert isinstance(config.health.timeout, float)
    assert config.images.pull_inactivity_timeout == 120.0
    assert config.log.level == "info"
    assert config.log.format == "text"
    assert config.nodes == [
        NodeConfig(address="tcp://127.0.0.1:23901", name="node-1", labels={"zone": "a"}),
        NodeConfig(address="tcp://127.0.0.1:23902", name="node-2", labels={"zone": "b"}),
    ]


def test_example_file_accepts_path_as_string() -> None:
    assert load(str(EXAMPLE), env={}) == load(EXAMPLE, env={})


def test_no_file_and_no_environment_gives_defaults() -> None:
    assert_defaults(load(None, env={}))
    assert_defaults(load(env={}))
    assert_defaults(from_dict({}))


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert_defaults(load(write(tmp_path, ""), env={}))


def test_empty_sections_give_defaults(tmp_path: Path) -> None:
    text = "[server]\n[storage]\n[scheduler]\n[health]\n[log]\n"
    assert_defaults(load(write(tmp_path, text), env={}))


def test_missing_keys_keep_their_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [storage]
        url = "redis://127.0.0.1:6379/0"

        [health]
        timeout = 1.5

        [log]
        format = "json"
        """,
    )
    config = load(path, env={})
    assert config.storage.url == "redis://127.0.0.1:6379/0"
    assert config.storage.prefix == "swarmproxy:"
    assert config.health.timeout == 1.5
    assert config.health.interval == 5.0
    assert config.log.format == "json"
    assert config.log.level == "info"
    assert config.server.listen == [DEFAULT_LISTEN]
    assert config.scheduler.strategy == "round-robin"
    assert config.nodes == []


def test_every_key_set_in_a_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [server]
        listen = ["tcp://0.0.0.0:2375", "unix:///run/swarmproxy.sock"]
        name = "cluster-a"

        [storage]
        url = "redis://10.0.0.9:6379/2"
        prefix = "a:"

        [scheduler]
        strategy = "round-robin"

        [health]
        interval = 2
        timeout = 0.5

        [log]
        level = "debug"
        format = "json"

        [[nodes]]
        address = "unix:///var/run/docker.sock"

        [[nodes]]
        address = "tcp://10.0.0.1:2375"
        name = "remote"
        labels = { zone = "a", disk = "ssd" }
        """,
    )
    config = load(path, env={})
    assert config.server.listen == ["tcp://0.0.0.0:2375", "unix:///run/swarmproxy.sock"]
    assert config.server.name == "cluster-a"
    assert config.storage.url == "redis://10.0.0.9:6379/2"
    assert config.storage.prefix == "a:"
    assert config.scheduler.strategy == "round-robin"
    assert config.health.interval == 2.0
    assert isinstance(config.health.interval, float)
    assert config.health.timeout == 0.5
    assert config.log.level == "debug"
    assert config.log.format == "json"
    assert config.nodes == [
        NodeConfig(address="unix:///var/run/docker.sock", name="/var/run/docker.sock", labels={}),
        NodeConfig(
            address="tcp://10.0.0.1:2375", name="remote", labels={"zone": "a", "disk": "ssd"}
        ),
    ]


def test_listen_may_be_a_single_string() -> None:
    config = from_dict({"server": {"listen": "unix:///run/sp.sock"}})
    assert config.server.listen == ["unix:///run/sp.sock"]


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_every_log_level_is_accepted(level: str) -> None:
    assert from_dict({"log": {"level": level}}).log.level == level


# --- node names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "name"),
    [
        ("tcp://10.0.0.1:2375", "10.0.0.1:2375"),
        ("tcp://docker-host.example:2376", "docker-host.example:2376"),
        # The whole path: sockets are often all called docker.sock, in different folders.
        ("unix:///var/run/docker.sock", "/var/run/docker.sock"),
        ("unix:///tmp/node-3/d.sock", "/tmp/node-3/d.sock"),
        ("unix:///run/dockerd", "/run/dockerd"),
    ],
)
def test_node_name_defaults_from_the_address(address: str, name: str) -> None:
    assert default_node_name(address) == name
    assert from_dict({"nodes": [{"address": address}]}).nodes[0].name == name
    assert parse_node(address).name == name


def test_empty_node_name_falls_back_to_the_default() -> None:
    node = from_dict({"nodes": [{"address": "tcp://h:1", "name": ""}]}).nodes[0]
    assert node.name == "h:1"


def test_parse_node_forms() -> None:
    assert parse_node("tcp://a:1") == NodeConfig(address="tcp://a:1", name="a:1")
    assert parse_node("n1=tcp://a:1") == NodeConfig(address="tcp://a:1", name="n1")
    assert parse_node("n2=unix:///run/d.sock") == NodeConfig(
        address="unix:///run/d.sock", name="n2"
    )
    assert parse_node("=tcp://a:1") == NodeConfig(address="tcp://a:1", name="a:1")


def test_parse_node_errors_name_the_given_key() -> None:
    error = config_error(parse_node, "http://x:1", "--node")
    assert str(error).startswith("--node.address: ")
    assert "'http://x:1'" in str(error)
    assert error.key == "--node.address"

    error = config_error(parse_node, "n1=tcp://host")
    assert str(error).startswith("nodes.address: ")


# --- the environment -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "text", "section", "key", "expected"),
    [
        (
            "SWARMPROXY_SERVER_LISTEN",
            "tcp://0.0.0.0:2375",
            "server",
            "listen",
            ["tcp://0.0.0.0:2375"],
        ),
        (
            "SWARMPROXY_SERVER_LISTEN",
            "tcp://0.0.0.0:2375,unix:///run/sp.sock",
            "server",
            "listen",
            ["tcp://0.0.0.0:2375", "unix:///run/sp.sock"],
        ),
        (
            "SWARMPROXY_SERVER_LISTEN",
            " tcp://0.0.0.0:2375 , unix:///run/sp.sock ,",
            "server",
            "listen",
            ["tcp://0.0.0.0:2375", "unix:///run/sp.sock"],
        ),
        (
            "SWARMPROXY_SERVER_LISTEN",
            '["tcp://0.0.0.0:2375", "unix:///run/sp.sock"]',
            "server",
            "listen",
            ["tcp://0.0.0.0:2375", "unix:///run/sp.sock"],
        ),
        (
            "SWARMPROXY_SERVER_LISTEN",
            '  ["unix:///run/sp.sock"]',
            "server",
            "listen",
            ["unix:///run/sp.sock"],
        ),
        ("SWARMPROXY_SERVER_NAME", "cluster-b", "server", "name", "cluster-b"),
        (
            "SWARMPROXY_STORAGE_URL",
            "redis://127.0.0.1:6379/0",
            "storage",
            "url",
            "redis://127.0.0.1:6379/0",
        ),
        ("SWARMPROXY_STORAGE_PREFIX", "b:", "storage", "prefix", "b:"),
        ("SWARMPROXY_SCHEDULER_STRATEGY", "round-robin", "scheduler", "strategy", "round-robin"),
        ("SWARMPROXY_HEALTH_INTERVAL", "2.5", "health", "interval", 2.5),
        ("SWARMPROXY_HEALTH_INTERVAL", "7", "health", "interval", 7.0),
        ("SWARMPROXY_HEALTH_TIMEOUT", "0.25", "health", "timeout", 0.25),
        (
            "SWARMPROXY_IMAGES_PULL_INACTIVITY_TIMEOUT",
            "30",
            "images",
            "pull_inactivity_timeout",
            30.0,
        ),
        ("SWARMPROXY_LOG_LEVEL", "debug", "log", "level", "debug"),
        ("SWARMPROXY_LOG_FORMAT", "json", "log", "format", "json"),
    ],
)
def test_every_key_can_be_set_from_the_environment(
    var: str, text: str, section: str, key: str, expected: Any
) -> None:
    config = load(None, env={var: text})
    assert getattr(getattr(config, section), key) == expected
    if isinstance(expected, float):
        assert isinstance(getattr(getattr(config, section), key), float)


def test_environment_overrides_the_file_key_by_key() -> None:
    env = {
        "SWARMPROXY_SERVER_LISTEN": "tcp://0.0.0.0:4000",
        "SWARMPROXY_STORAGE_PREFIX": "env:",
        "SWARMPROXY_HEALTH_TIMEOUT": "9",
        "SWARMPROXY_LOG_LEVEL": "error",
    }
    config = load(EXAMPLE, env=env)
    assert config.server.listen == ["tcp://0.0.0.0:4000"]
    assert config.storage.prefix == "env:"
    assert config.health.timeout == 9.0
    assert config.log.level == "error"
    # Keys the environment does not name keep the file's values.
    assert config.storage.url == "memory://"
    assert config.health.interval == 5.0
    assert config.log.format == "text"
    assert [n.name for n in config.nodes] == ["node-1", "node-2"]


def test_swarmproxy_nodes_replaces_the_files_nodes() -> None:
    env = {"SWARMPROXY_NODES": "name=tcp://10.0.0.1:2375,tcp://10.0.0.2:2375"}
    config = load(EXAMPLE, env=env)
    assert config.nodes == [
        NodeConfig(address="tcp://10.0.0.1:2375", name="name", labels={}),
        NodeConfig(address="tcp://10.0.0.2:2375", name="10.0.0.2:2375", labels={}),
    ]


def test_swarmproxy_nodes_without_a_file() -> None:
    env = {"SWARMPROXY_NODES": " a=tcp://10.0.0.1:2375 , unix:///run/n2/docker.sock ,, "}
    config = load(None, env=env)
    assert config.nodes == [
        NodeConfig(address="tcp://10.0.0.1:2375", name="a"),
        NodeConfig(address="unix:///run/n2/docker.sock", name="/run/n2/docker.sock"),
    ]


def test_unrelated_environment_variables_are_ignored() -> None:
    env = {"PATH": "/usr/bin", "HOME": "/root", "SWARMPROXY": "x", "XSWARMPROXY_LOG_LEVEL": "y"}
    assert_defaults(load(None, env=env))


def test_environment_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.startswith("SWARMPROXY_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("SWARMPROXY_LOG_LEVEL", "warning")
    monkeypatch.setenv("SWARMPROXY_NODES", "tcp://10.0.0.1:2375")
    config = load(None)
    assert config.log.level == "warning"
    assert [n.address for n in config.nodes] == ["tcp://10.0.0.1:2375"]


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"SWARMPROXY_BOGUS_KEY": "1"}, "SWARMPROXY_BOGUS_KEY"),
        ({"SWARMPROXY_SERVER_PORT": "1"}, "SWARMPROXY_SERVER_PORT"),
        ({"SWARMPROXY_LOG": "debug"}, "SWARMPROXY_LOG"),
        ({"SWARMPROXY_NODES": "http://x:1"}, "SWARMPROXY_NODES.address"),
        ({"SWARMPROXY_NODES": "n=tcp://host"}, "SWARMPROXY_NODES.address"),
        ({"SWARMPROXY_SERVER_LISTEN": "tcp://host"}, "server.listen"),
        ({"SWARMPROXY_SERVER_LISTEN": "tcp://a:1,http://b:2"}, "server.listen"),
        ({"SWARMPROXY_SERVER_LISTEN": ""}, "server.listen"),
        ({"SWARMPROXY_SERVER_LISTEN": " , "}, "server.listen"),
        ({"SWARMPROXY_SERVER_LISTEN": "[1, 2]"}, "server.listen"),
        ({"SWARMPROXY_SERVER_LISTEN": '{"a": 1}'}, "server.listen"),
        ({"SWARMPROXY_SERVER_LISTEN": '["tcp://a:1",'}, "server.listen"),
        ({"SWARMPROXY_HEALTH_INTERVAL": "soon"}, "health.interval"),
        ({"SWARMPROXY_HEALTH_TIMEOUT": "0"}, "health.timeout"),
        ({"SWARMPROXY_HEALTH_TIMEOUT": "-1"}, "health.timeout"),
        ({"SWARMPROXY_IMAGES_PULL_INACTIVITY_TIMEOUT": "0"}, "images.pull_inactivity_timeout"),
        ({"SWARMPROXY_LOG_LEVEL": "verbose"}, "log.level"),
        ({"SWARMPROXY_LOG_FORMAT": "xml"}, "log.format"),
        (
            {"SWARMPROXY_NODES": "a=tcp://10.0.0.1:2375,b=tcp://10.0.0.1:2375"},
            "nodes[1].address",
        ),
        ({"SWARMPROXY_NODES": "a=tcp://10.0.0.1:2375,a=tcp://10.0.0.2:2375"}, "nodes[1].name"),
    ],
)
def test_bad_environment_names_the_key(env: dict[str, str], key: str) -> None:
    error = config_error(load, None, env=env)
    assert str(error).startswith(f"{key}: ")
    assert error.key == key


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key", "problem"),
    [
        ({"bogus": {}}, "bogus", "unknown section"),
        ({"node": [{"address": "tcp://a:1"}]}, "node", "unknown section"),
        ({"server": "tcp://a:1"}, "server", "must be a table"),
        ({"log": ["info"]}, "log", "must be a table"),
        ({"server": {"port": 2375}}, "server.port", "unknown key"),
        ({"storage": {"URL": "memory://"}}, "storage.URL", "unknown key"),
        ({"health": {"retries": 3}}, "health.retries", "unknown key"),
        ({"server": {"listen": 2375}}, "server.listen", "must be a list of addresses"),
        ({"server": {"listen": ["tcp://a:1", 2]}}, "server.listen", "must be a list"),
        ({"server": {"listen": []}}, "server.listen", "needs at least one address"),
        ({"server": {"listen": ["tcp://host"]}}, "server.listen", "'tcp://host' is not"),
        ({"server": {"listen": ["http://x:1"]}}, "server.listen", "'http://x:1' is not"),
        ({"server": {"listen": ["tcp://:2375"]}}, "server.listen", "is not"),
        ({"server": {"listen": ["tcp://a:port"]}}, "server.listen", "is not"),
        ({"server": {"listen": ["unix://relative.sock"]}}, "server.listen", "is not"),
        ({"server": {"listen": ["unix:///"]}}, "server.listen", "is not"),
        ({"server": {"listen": ["127.0.0.1:2375"]}}, "server.listen", "is not"),
        ({"server": {"name": 5}}, "server.name", "must be a string"),
        ({"storage": {"url": 6379}}, "storage.url", "must be a string"),
        ({"storage": {"prefix": ["a"]}}, "storage.prefix", "must be a string"),
        ({"scheduler": {"strategy": 1}}, "scheduler.strategy", "must be a string"),
        ({"health": {"interval": 0}}, "health.interval", "must be a positive number"),
        ({"health": {"interval": -2.5}}, "health.interval", "must be a positive number"),
        ({"health": {"interval": "5"}}, "health.interval", "must be a positive number"),
        ({"health": {"timeout": True}}, "health.timeout", "must be a positive number"),
        ({"log": {"level": "verbose"}}, "log.level", "must be one of debug, error, info, warning"),
        ({"log": {"level": "INFO"}}, "log.level", "must be one of"),
        ({"log": {"level": 10}}, "log.level", "must be a string"),
        ({"log": {"format": "xml"}}, "log.format", "must be one of json, text"),
        ({"nodes": {"address": "tcp://a:1"}}, "nodes", "must be an array of tables"),
        ({"nodes": "tcp://a:1"}, "nodes", "must be an array of tables"),
        ({"nodes": ["tcp://a:1"]}, "nodes[0]", "must be a table with an address"),
        ({"nodes": [{}]}, "nodes[0].address", "is required"),
        ({"nodes": [{"name": "n"}]}, "nodes[0].address", "is required"),
        ({"nodes": [{"address": 2375}]}, "nodes[0].address", "must be a string"),
        ({"nodes": [{"address": "tcp://host"}]}, "nodes[0].address", "'tcp://host' is not"),
        (
            {"nodes": [{"address": "tcp://a:1"}, {"address": "http://x:1"}]},
            "nodes[1].address",
            "'http://x:1' is not",
        ),
        ({"nodes": [{"address": "tcp://a:1", "port": 1}]}, "nodes[0].port", "unknown key"),
        ({"nodes": [{"address": "tcp://a:1", "name": 5}]}, "nodes[0].name", "must be a string"),
        ({"nodes": [{"address": "tcp://a:1", "labels": "x"}]}, "nodes[0].labels", "table"),
        ({"nodes": [{"address": "tcp://a:1", "labels": {"a": 1}}]}, "nodes[0].labels", "table"),
        (
            {"nodes": [{"address": "tcp://a:1"}, {"address": "tcp://a:1", "name": "other"}]},
            "nodes[1].address",
            "tcp://a:1 is listed twice",
        ),
        (
            {
                "nodes": [
                    {"address": "tcp://a:1", "name": "n"},
                    {"address": "tcp://b:1"},
                    {"address": "tcp://c:1", "name": "n"},
                ]
            },
            "nodes[2].name",
            "n is used twice",
        ),
        (
            # An explicit name that is another node's default name.
            {"nodes": [{"address": "tcp://a:1"}, {"address": "tcp://b:1", "name": "a:1"}]},
            "nodes[1].name",
            "a:1 is used twice",
        ),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, Any], key: str, problem: str) -> None:
    error = config_error(from_dict, raw)
    assert str(error).startswith(f"{key}: ")
    assert problem in str(error)
    assert error.key == key


@pytest.mark.parametrize(
    "address",
    [
        "tcp://127.0.0.1:2375",
        "tcp://0.0.0.0:1",
        "tcp://docker-host.example:65535",
        "tcp://node-1:2375",
        "tcp://[::1]:2375",
        "tcp://[fe80::1:2]:2376",
        "tcp://[::ffff:10.0.0.1]:2375",
        "unix:///var/run/docker.sock",
        "unix:///run/node 1/d.sock",
    ],
)
def test_good_addresses_are_accepted(address: str) -> None:
    config = from_dict({"server": {"listen": [address]}, "nodes": [{"address": address}]})
    assert config.server.listen == [address]
    assert config.nodes[0].address == address


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("tcp://h:1\n", "is not tcp://HOST:PORT or unix:///PATH"),
        ("unix:///run/d.sock\n", "is not"),
        ("unix:///run/\x00.sock", "is not"),
        (" tcp://h:1", "is not"),
        ("tcp://my host:1", "is not"),
        ("tcp://h:1/path", "is not"),
        ("tcp://user@h:1", "is not"),
        ("tcp://::1:2375", "is not"),
        ("tcp://[::1]", "is not"),
        ("tcp://[]:2375", "is not"),
        ("tcp://h:123456", "is not"),
        ("TCP://h:1", "is not"),
        ("unix://", "is not"),
        ("tcp://h:0", "has a port outside 1-65535"),
        ("tcp://h:65536", "has a port outside 1-65535"),
        ("tcp://h:99999", "has a port outside 1-65535"),
    ],
)
@pytest.mark.parametrize("where", ["listen", "node"])
def test_malformed_addresses_are_rejected(address: str, problem: str, where: str) -> None:
    if where == "listen":
        raw: dict[str, Any] = {"server": {"listen": ["tcp://a:1", address]}}
        key = "server.listen"
    else:
        raw = {"nodes": [{"address": "tcp://a:1"}, {"address": address}]}
        key = "nodes[1].address"
    error = config_error(from_dict, raw)
    assert str(error).startswith(f"{key}: {address!r} ")
    assert problem in str(error)
    assert error.key == key


def test_config_error_message_starts_with_the_key() -> None:
    error = ConfigError("server.listen", "needs at least one address")
    assert str(error) == "server.listen: needs at least one address"
    assert error.key == "server.listen"
    assert isinstance(error, Exception)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[bogus]\nx = 1\n", "bogus"),
        ('[server]\nlisten = ["tcp://a:1"]\nport = 1\n', "server.port"),
        ('[server]\nlisten = ["tcp://host"]\n', "server.listen"),
        ('[health]\ninterval = "5s"\n', "health.interval"),
        ('[log]\nlevel = "trace"\n', "log.level"),
        ('[[nodes]]\naddress = "http://x:1"\n', "nodes[0].address"),
        (
            '[[nodes]]\naddress = "tcp://a:1"\n[[nodes]]\naddress = "tcp://a:1"\n',
            "nodes[1].address",
        ),
        (
            '[[nodes]]\naddress = "tcp://a:1"\nname = "n"\n'
            '[[nodes]]\naddress = "tcp://b:1"\nname = "n"\n',
            "nodes[1].name",
        ),
        ('[nodes]\naddress = "tcp://a:1"\n', "nodes"),
        ('[[nodes]]\naddress = "tcp://a:1"\nzone = "a"\n', "nodes[0].zone"),
    ],
)
def test_bad_files_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    error = config_error(load, write(tmp_path, text), env={})
    assert str(error).startswith(f"{key}: ")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    error = config_error(load, path, env={})
    assert str(error) == f"{path}: cannot read the config file: No such file or directory"
    assert error.key == str(path)


def test_directory_instead_of_a_file(tmp_path: Path) -> None:
    error = config_error(load, tmp_path, env={})
    assert str(error).startswith(f"{tmp_path}: cannot read the config file: ")


def test_path_under_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, "") / "swarmproxy.toml"
    error = config_error(load, path, env={})
    assert str(error) == f"{path}: cannot read the config file: Not a directory"


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root reads any file, so the refusal is simulated where config.py opens the file.
    def refuse(path: Any, mode: str = "r") -> Any:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(config_module, "open", refuse, raising=False)
    path = write(tmp_path, "")
    error = config_error(load, path, env={})
    assert str(error) == f"{path}: cannot read the config file: Permission denied"
    assert error.key == str(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    path.chmod(0)
    error = config_error(load, path, env={})
    assert str(error) == f"{path}: cannot read the config file: Permission denied"


@pytest.mark.parametrize(
    "text",
    [
        "[server\n",
        "listen = \n",
        '[server]\nlisten = ["a"\n',
        "a = 1\na = 2\n",
        "x = 'unterminated\n",
    ],
)
def test_invalid_toml(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    error = config_error(load, path, env={})
    assert str(error).startswith(f"{path}: invalid TOML: ")
    assert "\n" not in str(error)


def test_file_error_comes_before_environment_errors(tmp_path: Path) -> None:
    error = config_error(load, tmp_path / "missing.toml", env={"SWARMPROXY_BOGUS_X": "1"})
    assert error.key == str(tmp_path / "missing.toml")


# --- known bugs (see the report); strict, so a fix shows up as XPASS ----------------------


@pytest.mark.parametrize("text", ["nan", "NaN", "-nan"])
def test_nan_interval_is_rejected(text: str) -> None:
    error = config_error(load, None, env={"SWARMPROXY_HEALTH_INTERVAL": text})
    assert error.key == "health.interval"


def test_nan_interval_in_a_file_is_rejected(tmp_path: Path) -> None:
    error = config_error(load, write(tmp_path, "[health]\ntimeout = nan\n"), env={})
    assert error.key == "health.timeout"


def test_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[server]\nname = "caf\xe9"\n')
    error = config_error(load, path, env={})
    assert error.key == str(path)


def test_scalar_section_with_an_environment_override_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, 'server = "tcp://a:1"\n')
    error = config_error(load, path, env={"SWARMPROXY_SERVER_LISTEN": "tcp://b:1"})
    assert error.key == "server"


# --- TLS -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    ca: Path
    server: Issued
    client: Issued
    other_client: Issued
    encrypted: Issued
    garbage: Path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("certs")
    ca = Authority(directory / "ca", "config test CA")
    garbage = directory / "garbage.pem"
    garbage.write_text("not a PEM file\n")
    return Certs(
        ca=ca.cert,
        server=ca.issue("server", server=True),
        client=ca.issue("client"),
        other_client=ca.issue("other-client"),
        encrypted=ca.issue("locked", password=b"secret"),
        garbage=garbage,
    )


def tls_node(**settings: Any) -> dict[str, Any]:
    return {"nodes": [{"address": "tcp://127.0.0.1:2376", **settings}]}


def test_node_tls_from_files(certs: Certs) -> None:
    node = from_dict(
        tls_node(
            tls_ca=str(certs.ca), tls_cert=str(certs.client.cert), tls_key=str(certs.client.key)
        )
    ).nodes[0]
    assert node.tls is not None
    assert node.tls.ca is not None and node.tls.ca.text == certs.ca.read_text()
    assert node.tls.cert is not None and node.tls.cert.path == str(certs.client.cert)
    # The key's text never shows in a repr (a logged config).
    assert "PRIVATE KEY" not in repr(node)
    context = node.tls.client_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_node_tls_from_inline_pems(certs: Certs) -> None:
    inline = from_dict(
        tls_node(
            tls_ca_pem=certs.ca.read_text(),
            tls_cert_pem=certs.client.cert.read_text(),
            tls_key_pem=certs.client.key.read_text(),
        )
    ).nodes[0]
    assert inline.tls is not None and inline.tls.ca is not None and inline.tls.key is not None
    assert inline.tls.ca.text == certs.ca.read_text()
    assert inline.tls.key.setting == "tls_key_pem"
    assert inline.tls.key.path is None


def test_node_tls_with_a_ca_alone_verifies_the_node_only(certs: Certs) -> None:
    node = from_dict(tls_node(tls_ca=str(certs.ca))).nodes[0]
    assert node.tls is not None and node.tls.cert is None
    assert node.tls.client_context().verify_mode == ssl.CERT_REQUIRED


def test_a_node_without_tls_settings_has_no_tls() -> None:
    assert from_dict(tls_node()).nodes[0].tls is None


def test_node_tls_in_a_file(tmp_path: Path, certs: Certs) -> None:
    path = write(
        tmp_path,
        f"""
        [[nodes]]
        address = "tcp://10.0.0.1:2376"
        tls_ca = "{certs.ca}"
        tls_cert = "{certs.client.cert}"
        tls_key = "{certs.client.key}"

        [[nodes]]
        address = "tcp://10.0.0.2:2375"
        """,
    )
    config = load(path, env={})
    assert config.nodes[0].tls is not None
    assert config.nodes[1].tls is None


def test_server_tls_from_a_file_and_the_environment(tmp_path: Path, certs: Certs) -> None:
    path = write(tmp_path, f'[server.tls]\ncert = "{certs.server.cert}"\nkey = "/nowhere"\n')
    env = {
        "SWARMPROXY_SERVER_TLS_KEY": str(certs.server.key),
        "SWARMPROXY_SERVER_TLS_CLIENT_CA": str(certs.ca),
    }
    tls = load(path, env=env).server.tls
    assert tls is not None and tls.client_ca is not None
    assert (tls.cert.path, tls.key.path, tls.client_ca.path) == (
        str(certs.server.cert),
        str(certs.server.key),
        str(certs.ca),
    )
    assert tls.server_context().verify_mode == ssl.CERT_REQUIRED


def test_server_tls_from_the_environment_alone(certs: Certs) -> None:
    env = {
        "SWARMPROXY_SERVER_TLS_CERT": str(certs.server.cert),
        "SWARMPROXY_SERVER_TLS_KEY": str(certs.server.key),
    }
    tls = load(None, env=env).server.tls
    assert tls is not None and tls.client_ca is None
    # No client_ca: any client may connect, as to a daemon started with --tls alone.
    assert tls.server_context().verify_mode == ssl.CERT_NONE


def test_no_server_tls_by_default() -> None:
    assert load(None, env={}).server.tls is None
    assert load(EXAMPLE, env={}).server.tls is None


def placeholders(certs: Certs) -> dict[str, Path]:
    return {
        "<ca>": certs.ca,
        "<server-cert>": certs.server.cert,
        "<server-key>": certs.server.key,
        "<cert>": certs.client.cert,
        "<key>": certs.client.key,
        "<other-key>": certs.other_client.key,
        "<locked-key>": certs.encrypted.key,
        "<garbage>": certs.garbage,
    }


def with_paths(certs: Certs, settings: dict[str, Any]) -> dict[str, Any]:
    """Settings whose placeholder values become the files they name."""
    paths = placeholders(certs)
    return {k: str(paths.get(v, v)) if isinstance(v, str) else v for k, v in settings.items()}


def with_paths_in(certs: Certs, text: str) -> str:
    for placeholder, path in placeholders(certs).items():
        text = text.replace(placeholder, str(path))
    return text


@pytest.mark.parametrize(
    ("settings", "key", "problem"),
    [
        ({"tls_ca": "/nonexistent/ca.pem"}, "tls_ca", "cannot read /nonexistent/ca.pem: No such"),
        ({"tls_ca": "<garbage>"}, "tls_ca", "no PEM certificate in <garbage>"),
        ({"tls_ca": "<key>"}, "tls_ca", "no PEM certificate in <key>"),
        ({"tls_ca_pem": "not PEM"}, "tls_ca_pem", "no PEM certificate in the inline text"),
        ({"tls_ca_pem": ""}, "tls_ca_pem", "no PEM certificate"),
        ({"tls_ca": ""}, "tls_ca", "must be a file path"),
        ({"tls_ca": 1}, "tls_ca", "must be a file path"),
        ({"tls_ca_pem": ["x"]}, "tls_ca_pem", "must be a string of PEM text"),
        (
            {"tls_ca": "<ca>", "tls_ca_pem": "x"},
            "tls_ca_pem",
            "give tls_ca or tls_ca_pem, not both",
        ),
        ({"tls_cert": "<cert>"}, "tls_cert", "needs tls_key or tls_key_pem too"),
        ({"tls_key": "<key>"}, "tls_key", "needs tls_cert or tls_cert_pem too"),
        (
            {"tls_cert": "<garbage>", "tls_key": "<key>"},
            "tls_cert",
            "no PEM certificate in <garbage>",
        ),
        (
            {"tls_cert": "<cert>", "tls_key": "<garbage>"},
            "tls_key",
            "no PEM private key in <garbage>",
        ),
        ({"tls_cert": "<cert>", "tls_key": "<cert>"}, "tls_key", "no PEM private key in <cert>"),
        (
            {"tls_cert": "<cert>", "tls_key": "<other-key>"},
            "tls_key",
            "the key in <other-key> does not match the certificate in <cert>",
        ),
        (
            {"tls_cert": "<cert>", "tls_key": "<locked-key>"},
            "tls_key",
            "the key in <locked-key> is encrypted; give it unencrypted",
        ),
        (
            {"tls_cert": "<cert>", "tls_key_pem": "nope"},
            "tls_key_pem",
            "no PEM private key in the inline text",
        ),
        (
            {"tls_cert_pem": "nope", "tls_key": "<key>"},
            "tls_cert_pem",
            "no PEM certificate in the inline text",
        ),
        (
            {"tls_cert": "<cert>", "tls_key": "/nonexistent/key.pem"},
            "tls_key",
            "cannot read /nonexistent/key.pem",
        ),
    ],
)
def test_bad_node_tls_names_the_key(
    certs: Certs, settings: dict[str, Any], key: str, problem: str
) -> None:
    raw = {"nodes": [{"address": "tcp://a:1"}, tls_node(**with_paths(certs, settings))["nodes"][0]]}
    error = config_error(from_dict, raw)
    assert str(error).startswith(f"nodes[1].{key}: {with_paths_in(certs, problem)}")
    assert error.key == f"nodes[1].{key}"
    assert "\n" not in str(error)


def test_tls_on_a_unix_node_is_refused(certs: Certs) -> None:
    raw = {"nodes": [{"address": "unix:///run/docker.sock", "tls_ca": str(certs.ca)}]}
    error = config_error(from_dict, raw)
    assert str(error) == "nodes[0].tls_ca: TLS is for tcp:// nodes, not unix:///run/docker.sock"


@pytest.mark.parametrize(
    ("tls", "key", "problem"),
    [
        ("cert.pem", "server.tls", "must be a table with cert and key"),
        ({}, "server.tls.cert", "is required"),
        ({"cert": "<server-cert>"}, "server.tls.key", "is required"),
        ({"key": "<server-key>"}, "server.tls.cert", "is required"),
        (
            {"cert": "<server-cert>", "key": "<server-key>", "ca": "<ca>"},
            "server.tls.ca",
            "unknown key",
        ),
        (
            {"cert": "/nonexistent.pem", "key": "<server-key>"},
            "server.tls.cert",
            "cannot read /nonexistent.pem: No such file or directory",
        ),
        (
            {"cert": "<server-cert>", "key": "<garbage>"},
            "server.tls.key",
            "no PEM private key in <garbage>",
        ),
        (
            {"cert": "<server-cert>", "key": "<key>"},
            "server.tls.key",
            "the key in <key> does not match the certificate in <server-cert>",
        ),
        (
            {"cert": "<server-cert>", "key": "<server-key>", "client_ca": "<garbage>"},
            "server.tls.client_ca",
            "no PEM certificate in <garbage>",
        ),
        (
            {"cert": "<server-cert>", "key": "<server-key>", "client_ca": 5},
            "server.tls.client_ca",
            "must be a file path",
        ),
    ],
)
def test_bad_server_tls_names_the_key(certs: Certs, tls: Any, key: str, problem: str) -> None:
    if isinstance(tls, dict):
        tls = with_paths(certs, tls)
    error = config_error(from_dict, {"server": {"tls": tls}})
    assert str(error) == f"{key}: {with_paths_in(certs, problem)}"
    assert error.key == key


@pytest.mark.parametrize("var", ["SWARMPROXY_SERVER_TLS", "SWARMPROXY_SERVER_TLS_CA"])
def test_unknown_tls_environment_variables(var: str) -> None:
    error = config_error(load, None, env={var: "x"})
    assert str(error) == f"{var}: unknown setting"


def test_server_tls_that_is_not_a_table_with_an_environment_override(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\ntls = "on"\n')
    error = config_error(load, path, env={"SWARMPROXY_SERVER_TLS_CERT": "/x.pem"})
    assert error.key == "server.tls"


def test_the_admin_listener_is_asked_for() -> None:
    assert load(None, env={}).admin.listen == []
    config = load(
        None,
        env={
            "SWARMPROXY_ADMIN_LISTEN": "tcp://127.0.0.1:2376,unix:///run/sp-admin.sock",
            "SWARMPROXY_ADMIN_TOKEN": "s3cret",
        },
    )
    assert config.admin.listen == ["tcp://127.0.0.1:2376", "unix:///run/sp-admin.sock"]
    assert config.admin.token == "s3cret"
    with pytest.raises(ConfigError) as bad:
        from_dict({"admin": {"listen": ["http://x:1"]}})
    assert bad.value.key == "admin.listen"


def test_workers_need_shared_storage() -> None:
    assert from_dict({}).server.workers == 1
    shared = {"storage": {"url": "redis://127.0.0.1:6379/0"}}
    assert from_dict({"server": {"workers": 4}, **shared}).server.workers == 4
    error = config_error(from_dict, {"server": {"workers": 2}})
    assert str(error) == "server.workers: more than 1 needs shared storage (a Redis url)"
    error = config_error(from_dict, {"server": {"workers": 0}, **shared})
    assert str(error) == "server.workers: must be a whole number, at least 1"
