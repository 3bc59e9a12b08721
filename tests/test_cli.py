"""The `swarmproxy` command: the console entry as a subprocess, and build_config directly.

No test here starts a server: a valid configuration would serve forever, so the subprocess
runs only use configurations that fail, and the valid ones go through build_config.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarmproxy import __version__
from swarmproxy.cli import EXIT_CONFIG, _parser, build_config
from swarmproxy.config import DEFAULT_LISTEN, ConfigError, NodeConfig

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.toml"
# A configuration mistake must be reported long before this; it guards against a server.
TIMEOUT = 30


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SWARMPROXY_")}


@pytest.fixture(autouse=True)
def no_swarmproxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """build_config reads os.environ: keep the runner's SWARMPROXY_* variables out."""
    for var in list(os.environ):
        if var.startswith("SWARMPROXY_"):
            monkeypatch.delenv(var)


def swarmproxy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarmproxy", *args],
        cwd=REPO,
        env=clean_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def assert_config_error(result: subprocess.CompletedProcess[str], key: str) -> str:
    """One line on stderr, naming `key`, and exit status 2; returns the line."""
    assert result.returncode == EXIT_CONFIG == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"swarmproxy: config error: {key}: "), lines[0]
    return lines[0]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "swarmproxy.toml"
    path.write_text(text)
    return path


def args(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(["serve", *argv])


# --- the console entry ---------------------------------------------------------------------


def test_version() -> None:
    result = swarmproxy("--version")
    assert result.returncode == 0
    assert result.stdout == f"swarmproxy {__version__}\n"
    assert result.stderr == ""


def test_a_command_is_required() -> None:
    result = swarmproxy()
    assert result.returncode == 2
    assert "usage: swarmproxy" in result.stderr


def test_serve_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = 2375\n\n[[nodes]]\naddress = "tcp://127.0.0.1:1"\n')
    line = assert_config_error(swarmproxy("serve", "--config", str(path)), "server.port")
    assert line == "swarmproxy: config error: server.port: unknown key"


def test_serve_unknown_section(tmp_path: Path) -> None:
    path = write(tmp_path, "[cluster]\nname = 'x'\n")
    assert_config_error(swarmproxy("serve", "-c", str(path)), "cluster")


def test_serve_bad_node_address_in_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[[nodes]]\naddress = "tcp://127.0.0.1"\n')
    line = assert_config_error(swarmproxy("serve", "--config", str(path)), "nodes[0].address")
    assert "'tcp://127.0.0.1'" in line


def test_serve_bad_listen_address_in_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[server]\nlisten = ["http://0.0.0.0:2375"]\n[[nodes]]\naddress = "tcp://a:1"\n'
    )
    assert_config_error(swarmproxy("serve", "--config", str(path)), "server.listen")


def test_serve_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    line = assert_config_error(swarmproxy("serve", "--config", str(path)), str(path))
    assert line.endswith("cannot read the config file: No such file or directory")


def test_serve_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[server\n")
    line = assert_config_error(swarmproxy("serve", "--config", str(path)), str(path))
    assert "invalid TOML" in line


def test_serve_bad_node_flag() -> None:
    line = assert_config_error(swarmproxy("serve", "--node", "http://nope"), "--node.address")
    assert "'http://nope'" in line


def test_serve_bad_named_node_flag() -> None:
    assert_config_error(swarmproxy("serve", "-n", "n1=tcp://nope"), "--node.address")


def test_serve_bad_listen_flag() -> None:
    result = swarmproxy("serve", "--listen", "0.0.0.0:2375", "--node", "tcp://127.0.0.1:1")
    line = assert_config_error(result, "server.listen")
    assert "'0.0.0.0:2375'" in line


def test_serve_without_any_node() -> None:
    line = assert_config_error(swarmproxy("serve"), "nodes")
    assert "no node given" in line


def test_serve_file_without_nodes(tmp_path: Path) -> None:
    path = write(tmp_path, '[log]\nlevel = "debug"\n')
    assert_config_error(swarmproxy("serve", "--config", str(path)), "nodes")


def test_serve_unknown_scheduler_strategy(tmp_path: Path) -> None:
    path = write(tmp_path, '[scheduler]\nstrategy = "fastest"\n[[nodes]]\naddress = "tcp://a:1"\n')
    line = assert_config_error(swarmproxy("serve", "--config", str(path)), "scheduler.strategy")
    assert "'fastest'" in line
    assert "round-robin" in line


def test_serve_duplicate_node_flags() -> None:
    result = swarmproxy("serve", "--node", "tcp://a:1", "--node", "tcp://a:1")
    assert_config_error(result, "nodes[1].address")


def test_serve_bad_environment_variable() -> None:
    env = {**clean_env(), "SWARMPROXY_LOG_LEVEL": "loud"}
    assert_config_error(swarmproxy("serve", "--node", "tcp://a:1", env=env), "log.level")


def test_serve_unknown_environment_variable() -> None:
    env = {**clean_env(), "SWARMPROXY_SERVER_PORT": "2375"}
    assert_config_error(
        swarmproxy("serve", "--node", "tcp://a:1", env=env), "SWARMPROXY_SERVER_PORT"
    )


def test_serve_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[server]\nname = "caf\xe9"\n[[nodes]]\naddress = "tcp://a:1"\n')
    assert_config_error(swarmproxy("serve", "--config", str(path)), str(path))


# --- build_config ----------------------------------------------------------------------------


def test_build_config_from_the_example_file() -> None:
    config = build_config(args("--config", str(EXAMPLE)))
    assert config.server.listen == ["tcp://127.0.0.1:2375"]
    assert [(n.name, n.address) for n in config.nodes] == [
        ("node-1", "tcp://127.0.0.1:23901"),
        ("node-2", "tcp://127.0.0.1:23902"),
    ]


def test_listen_replaces_the_files_listen() -> None:
    config = build_config(
        args("--config", str(EXAMPLE), "--listen", "tcp://0.0.0.0:4000", "-l", "unix:///run/a.sock")
    )
    assert config.server.listen == ["tcp://0.0.0.0:4000", "unix:///run/a.sock"]
    assert [n.name for n in config.nodes] == ["node-1", "node-2"]


def test_listen_replaces_the_default_listen() -> None:
    assert build_config(args("--node", "tcp://a:1")).server.listen == [DEFAULT_LISTEN]
    config = build_config(args("--node", "tcp://a:1", "--listen", "tcp://0.0.0.0:4000"))
    assert config.server.listen == ["tcp://0.0.0.0:4000"]


def test_node_replaces_the_files_nodes() -> None:
    config = build_config(
        args(
            "--config", str(EXAMPLE), "--node", "tcp://10.0.0.1:2375", "-n", "b=unix:///run/b.sock"
        )
    )
    assert config.nodes == [
        NodeConfig(address="tcp://10.0.0.1:2375", name="10.0.0.1:2375"),
        NodeConfig(address="unix:///run/b.sock", name="b"),
    ]
    # The rest of the file still applies.
    assert config.health.interval == 5.0


def test_add_nodes_appends_to_the_files_nodes() -> None:
    config = build_config(
        args("--config", str(EXAMPLE), "--add-nodes", "--node", "node-3=tcp://127.0.0.1:23903")
    )
    assert config.nodes == [
        NodeConfig(address="tcp://127.0.0.1:23901", name="node-1", labels={"zone": "a"}),
        NodeConfig(address="tcp://127.0.0.1:23902", name="node-2", labels={"zone": "b"}),
        NodeConfig(address="tcp://127.0.0.1:23903", name="node-3"),
    ]


def test_name_equals_address_form() -> None:
    config = build_config(args("--node", "alpha=tcp://10.0.0.1:2375", "--node", "tcp://b:2"))
    assert [(n.name, n.address) for n in config.nodes] == [
        ("alpha", "tcp://10.0.0.1:2375"),
        ("b:2", "tcp://b:2"),
    ]


def test_nodes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMPROXY_NODES", "e1=tcp://10.0.0.1:2375,tcp://10.0.0.2:2375")
    config = build_config(args())
    assert [(n.name, n.address) for n in config.nodes] == [
        ("e1", "tcp://10.0.0.1:2375"),
        ("10.0.0.2:2375", "tcp://10.0.0.2:2375"),
    ]


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMPROXY_NODES", "e1=tcp://10.0.0.1:2375")
    monkeypatch.setenv("SWARMPROXY_SERVER_LISTEN", "tcp://0.0.0.0:3000")
    config = build_config(
        args("--node", "f1=tcp://10.0.0.9:2375", "--listen", "unix:///run/f.sock")
    )
    assert [n.name for n in config.nodes] == ["f1"]
    assert config.server.listen == ["unix:///run/f.sock"]

    config = build_config(args("--add-nodes", "--node", "f1=tcp://10.0.0.9:2375"))
    assert [n.name for n in config.nodes] == ["e1", "f1"]
    assert config.server.listen == ["tcp://0.0.0.0:3000"]


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (("--node", "http://nope"), "--node.address"),
        (("--node", "tcp://a:1", "--listen", "tcp://host"), "server.listen"),
        (("--node", "tcp://a:1", "--node", "tcp://a:1"), "nodes[1].address"),
        (("--node", "x=tcp://a:1", "--node", "x=tcp://b:1"), "nodes[1].name"),
        (
            ("--config", str(EXAMPLE), "--add-nodes", "--node", "tcp://127.0.0.1:23901"),
            "nodes[2].address",
        ),
        (("--config", str(EXAMPLE), "--add-nodes", "--node", "node-1=tcp://c:1"), "nodes[2].name"),
        ((), "nodes"),
        (("--add-nodes",), "nodes"),
    ],
)
def test_build_config_errors_name_the_key(argv: tuple[str, ...], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(args(*argv))
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")


def test_build_config_rejects_an_unknown_strategy(tmp_path: Path) -> None:
    path = write(tmp_path, '[scheduler]\nstrategy = "fastest"\n')
    with pytest.raises(ConfigError) as info:
        build_config(args("--config", str(path), "--node", "tcp://a:1"))
    assert str(info.value) == (
        "scheduler.strategy: unknown strategy 'fastest' "
        "(known: binpack, random, round-robin, spread, or package.module:Class)"
    )
    for text, key in (
        ('[scheduler]\nstrategy = "no.such:Strategy"\n', "scheduler.strategy"),
        ('[scheduler]\nfilters = ["health", "cpu"]\n', "scheduler.filters"),
        ('[scheduler]\nfilters = ["constraint"]\n', "scheduler.filters"),
        ("[scheduler]\nmax_attempts = 0\n", "scheduler.max_attempts"),
    ):
        with pytest.raises(ConfigError) as bad:
            build_config(args("--config", str(write(tmp_path, text)), "--node", "tcp://a:1"))
        assert bad.value.key == key
    custom = write(tmp_path, '[scheduler]\nstrategy = "tests.hooks_for_tests:FirstNode"\n')
    assert build_config(args("--config", str(custom), "--node", "tcp://a:1")).scheduler.strategy


def test_build_config_loads_the_healer_it_names(tmp_path: Path) -> None:
    good = write(tmp_path, '[health]\nhealer = "swarmproxy.cluster.healer:BackoffHealer"\n')
    assert build_config(args("--config", str(good), "--node", "tcp://a:1")).health.healer
    bad = write(tmp_path, '[health]\nhealer = "no.such.module:Healer"\n')
    with pytest.raises(ConfigError) as info:
        build_config(args("--config", str(bad), "--node", "tcp://a:1"))
    assert info.value.key == "health.healer"
    assert "cannot be loaded" in str(info.value)


def test_build_config_loads_the_hooks_it_names(tmp_path: Path) -> None:
    good = write(
        tmp_path, '[hooks]\nbefore_container_create = ["tests.hooks_for_tests:avoid_node_1"]\n'
    )
    assert build_config(args("--config", str(good), "--node", "tcp://a:1")).hooks
    for text, problem in (
        ('before_node_register = ["no.such:hook"]', "cannot be loaded"),
        ('before_node_register = "not a path"', 'must be a list of "package.module:function"'),
    ):
        bad = write(tmp_path, f"[hooks]\n{text}\n")
        with pytest.raises(ConfigError) as info:
            build_config(args("--config", str(bad), "--node", "tcp://a:1"))
        assert info.value.key == "hooks.before_node_register"
        assert problem in str(info.value)


def test_listen_accepts_ipv6_and_rejects_bad_ports() -> None:
    config = build_config(args("--node", "tcp://a:1", "--listen", "tcp://[::1]:2375"))
    assert config.server.listen == ["tcp://[::1]:2375"]
    with pytest.raises(ConfigError) as info:
        build_config(args("--node", "tcp://a:1", "--listen", "tcp://0.0.0.0:70000"))
    assert str(info.value) == "server.listen: 'tcp://0.0.0.0:70000' has a port outside 1-65535"
