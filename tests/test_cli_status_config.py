"""`swarmproxy config check` (in process: it starts nothing) and `swarmproxy status` against
real proxies.

config check and serve share one builder of the config; the tests hold them to it: every
problem the check lists first is the one serve refuses to start with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from swarmproxy.cli import _parser, build_config, main
from swarmproxy.config import ConfigError
from swarmproxy.local_nodes import DockerNode, free_port
from swarmproxy.status_cli import _report
from tests.rig.proxy import ADMIN_TOKEN, Proxy, own_env

# no_swarmproxy_env is autouse: the runner's SWARMPROXY_* variables stay out here too.
from tests.test_cli import EXAMPLE, no_swarmproxy_env, write  # noqa: F401

NODE = '[[nodes]]\naddress = "tcp://127.0.0.1:23901"\n'


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    """`swarmproxy config check ARGV…`: its exit status, stdout and stderr lines."""
    status = main(["config", "check", *argv])
    out, err = capsys.readouterr()
    return status, out, err.splitlines()


# --- config check: valid -------------------------------------------------------------------


def test_the_example_is_valid_and_summarised(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = check(capsys, "--config", str(EXAMPLE))
    assert (status, err) == (0, [])
    assert out.splitlines() == [
        f"{EXAMPLE}: valid",
        "listeners: tcp://127.0.0.1:2375",
        "admin:     none",
        "storage:   memory:// (prefix swarmproxy:)",
        "workers:   1",
        "scheduler: round-robin; filters health, constraint, affinity, port, dependency",
        "nodes:     2",
        "NAME     ADDRESS                 TLS   LABELS",
        "node-1   tcp://127.0.0.1:23901   no    zone=a",
        "node-2   tcp://127.0.0.1:23902   no    zone=b",
    ]


def test_flags_and_environment_apply_as_for_serve(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWARMPROXY_STORAGE_URL", "redis+sentinel://u:secret@s1:26379,s2:1/m/0")
    monkeypatch.setenv("SWARMPROXY_SERVER_WORKERS", "2")
    # The commands that talk to a running proxy read it: never a setting of serve's.
    monkeypatch.setenv("SWARMPROXY_ADMIN", "tcp://127.0.0.1:2376")
    argv = ("--config", str(EXAMPLE), "--add-nodes", "-n", "n3=unix:///run/n3.sock")
    argv += ("--listen", "unix:///run/sp.sock")
    status, out, err = check(capsys, *argv)
    assert (status, err) == (0, [])
    lines = out.splitlines()
    assert lines[0] == f"{EXAMPLE} with SWARMPROXY_SERVER_WORKERS, SWARMPROXY_STORAGE_URL: valid"
    assert "listeners: unix:///run/sp.sock" in lines
    assert "storage:   redis+sentinel://u:***@s1:26379,s2:1/m/0 (prefix swarmproxy:)" in lines
    assert "workers:   2" in lines
    assert "nodes:     3" in lines
    assert lines[-1].split() == ["n3", "unix:///run/n3.sock", "no", "-"]
    config = build_config(_parser().parse_args(["serve", *argv]))
    assert config.server.workers == 2
    assert [n.name for n in config.nodes] == ["node-1", "node-2", "n3"]


def test_nodes_from_flags_alone(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = check(capsys, "--node", "a=tcp://10.0.0.1:2375", "--node", "tcp://b:2")
    assert status == 0
    assert out.startswith("no config file: valid\n")


# --- config check: each kind of problem ----------------------------------------------------

PROBLEMS = [
    # (file text, or None for no file; environment; flags; the key; words of the reason)
    ("[cluster]\nname = 'x'\n" + NODE, {}, (), "cluster", "unknown section"),
    ("[server]\nport = 2375\n" + NODE, {}, (), "server.port", "unknown key"),
    ("log = 1\n" + NODE, {}, (), "log", "must be a table"),
    ("[health]\ninterval = -1\n" + NODE, {}, (), "health.interval", "positive number"),
    ("[server]\nworkers = 0\n" + NODE, {}, (), "server.workers", "whole number"),
    ('[log]\nlevel = "loud"\n' + NODE, {}, (), "log.level", "must be one of"),
    ('[server]\nlisten = ["0.0.0.0:1"]\n' + NODE, {}, (), "server.listen", "'0.0.0.0:1'"),
    ('[[nodes]]\naddress = "tcp://h"\n', {}, (), "nodes[0].address", "'tcp://h'"),
    ('[[nodes]]\naddress = "tcp://h:1"\nzone = "a"\n', {}, (), "nodes[0].zone", "unknown key"),
    (NODE + NODE, {}, (), "nodes[1].address", "listed twice"),
    ('[server.tls]\ncert = "/nope.pem"\nkey = "/nope.pem"\n' + NODE, {}, (), "server.tls.", ""),
    ('[[policy.clients]]\nsubject = "CN=ci"\n' + NODE, {}, (), "policy.clients", "client_ca"),
    ("[server]\nworkers = 2\n" + NODE, {}, (), "server.workers", "shared storage"),
    ("[policy]\nallow_everything = true\n" + NODE, {}, (), "policy.allow_everything", ""),
    ('[scheduler]\nstrategy = "fastest"\n' + NODE, {}, (), "scheduler.strategy", "'fastest'"),
    ('[scheduler]\nfilters = ["health", "cpu"]\n' + NODE, {}, (), "scheduler.filters", "cpu"),
    ('[scheduler]\nfilters = ["port"]\n' + NODE, {}, (), "scheduler.filters", "include health"),
    ('[health]\nhealer = "no.such:Healer"\n' + NODE, {}, (), "health.healer", "cannot be loaded"),
    (
        '[hooks]\nbefore_node_register = ["no.such:hook"]\n' + NODE,
        {},
        (),
        "hooks.before_node_register",
        "cannot be loaded",
    ),
    ("[server\n", {}, (), "FILE", "invalid TOML"),
    (None, {}, ("--config", "/no/such.toml"), "/no/such.toml", "No such file"),
    ("", {}, (), "nodes", "no node given"),
    (NODE, {"SWARMPROXY_LOG_LEVEL": "loud"}, (), "log.level", "must be one of"),
    (NODE, {"SWARMPROXY_SERVER_PORT": "1"}, (), "SWARMPROXY_SERVER_PORT", "unknown setting"),
    (NODE, {"SWARMPROXY_NODES": "tcp://x"}, (), "SWARMPROXY_NODES.address", "'tcp://x'"),
    (NODE, {}, ("--node", "http://x"), "--node.address", "'http://x'"),
    (NODE, {}, ("--listen", "tcp://h:99999"), "server.listen", "outside 1-65535"),
    (NODE, {}, ("--add-nodes", "-n", "tcp://127.0.0.1:23901"), "nodes[1].address", "twice"),
]


@pytest.mark.parametrize(("text", "env", "flags", "key", "why"), PROBLEMS)
def test_each_problem_is_named_as_serve_names_it(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    text: str | None,
    env: dict[str, str],
    flags: tuple[str, ...],
    key: str,
    why: str,
) -> None:
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    argv = flags if text is None else ("--config", str(write(tmp_path, text)), *flags)
    key = key.replace("FILE", str(tmp_path / "swarmproxy.toml"))
    status, out, err = check(capsys, *argv)
    assert (status, out) == (2, "")
    assert len(err) == 2, err
    assert err[0].startswith(f"swarmproxy: config error: {key}"), err[0]
    assert why in err[0]
    assert err[1].startswith("swarmproxy: ") and err[1].endswith(": 1 problem")
    # serve refuses to start with that very line.
    with pytest.raises(ConfigError) as refused:
        build_config(_parser().parse_args(["serve", *argv]))
    assert err[0] == f"swarmproxy: config error: {refused.value}"


def test_every_problem_is_listed_in_serves_order(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SWARMPROXY_HEALTH_TIMEOUT", "soon")
    path = write(
        tmp_path,
        '[server]\nport = 1\nlisten = ["http://x"]\n[health]\ntimeout = 1.0\n'
        '[scheduler]\nstrategy = "fastest"\n[[nodes]]\naddress = "tcp://h"\n'
        '[[nodes]]\naddress = "tcp://ok:1"\n',
    )
    status, _, err = check(capsys, "--config", str(path), "--node", "nope")
    assert status == 2
    assert [line.split(": ")[2] for line in err[:-1]] == [
        "server.port",
        "server.listen",
        "health.timeout",
        "nodes[0].address",
        "--node.address",
        "scheduler.strategy",
    ]
    assert err[-1] == f"swarmproxy: {path} with SWARMPROXY_HEALTH_TIMEOUT: 6 problems"
    with pytest.raises(ConfigError) as refused:
        build_config(_parser().parse_args(["serve", "--config", str(path), "--node", "nope"]))
    assert refused.value.key == "server.port"


def test_clashes_are_checked_once_every_key_is_valid(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Two nodes on one address are reported once the file has no other mistake: a clash
    among values that are wrong anyway would be noise."""
    path = write(tmp_path, '[log]\nlevel = "loud"\n' + NODE + NODE)
    assert check(capsys, "--config", str(path))[2][:-1] == [
        "swarmproxy: config error: log.level: must be one of debug, error, info, warning"
    ]
    path.write_text(NODE + NODE)
    assert check(capsys, "--config", str(path))[2][0].startswith(
        "swarmproxy: config error: nodes[1].address: "
    )


def test_serve_starts_with_swarmproxy_admin_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    """`export SWARMPROXY_ADMIN=…` for `swarmproxy node` must not stop `serve`."""
    monkeypatch.setenv("SWARMPROXY_ADMIN", "tcp://127.0.0.1:2376")
    assert build_config(_parser().parse_args(["serve", "--config", str(EXAMPLE)])).nodes


def test_config_without_an_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["config"])
    assert exited.value.code == 2
    assert "usage: swarmproxy config" in capsys.readouterr().err


# --- status ----------------------------------------------------------------------------------


def status(admin: str, *args: str, token: str = ADMIN_TOKEN) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarmproxy", "status", "--admin", admin, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**own_env(), "SWARMPROXY_ADMIN_TOKEN": token},
        check=False,
    )


@pytest.mark.e2e
def test_status_of_a_ready_proxy(proxy: Proxy, nodes: list[DockerNode]) -> None:
    result = status(proxy.admin_address)
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "proxy:    ready",
        "storage:  available",
        "nodes:    3 of 3 taking containers",
        "",
    ]
    assert [line.split()[:3] for line in lines[5:]] == [
        [node.name, node.tcp_address, "ready"] for node in nodes
    ]
    # The table of `swarmproxy node ls`.
    assert lines[4] == proxy.node_cli("ls").stdout.splitlines()[0]


@pytest.mark.e2e
def test_status_as_json(proxy: Proxy) -> None:
    result = status(proxy.admin_address, "--format", "json")
    assert result.returncode == 0
    health = json.loads(result.stdout)
    assert health["Status"] == "ready"
    assert health["Storage"]["Available"] is True
    assert [n["Name"] for n in health["Nodes"]] == ["node-1", "node-2", "node-3"]
    assert json.loads(status(proxy.admin_address, "--json").stdout)["Status"] == "ready"


@pytest.mark.e2e
@pytest.mark.parametrize("token", ["", "wrong"])
def test_status_without_the_token_is_the_verdict(proxy: Proxy, token: str) -> None:
    result = status(proxy.admin_address, token=token)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "proxy:    ready",
        "storage:  available",
        "nodes:    3 taking containers",
    ]
    assert "admin token" in result.stderr


@pytest.mark.e2e
def test_status_of_a_proxy_with_no_node_up(tmp_path: Path) -> None:
    """A node that never answers: the proxy is unready, and says so with exit status 1."""
    ghost = DockerNode("ghost", tmp_path / "ghost", free_port())
    with Proxy.start(tmp_path / "proxy", [ghost]) as proxy:
        result = status(proxy.admin_address)
        assert result.returncode == 1, result.stderr
        lines = result.stdout.splitlines()
        assert lines[:3] == [
            "proxy:    unready",
            "storage:  available",
            "nodes:    0 of 1 taking containers",
        ]
        assert lines[5].split()[:2] == ["ghost", ghost.tcp_address]
        unready = status(proxy.admin_address, "--format", "json")
        assert unready.returncode == 1
        assert json.loads(unready.stdout)["Status"] == "unready"


def test_status_of_no_proxy_at_all() -> None:
    result = status(f"tcp://127.0.0.1:{free_port()}")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("swarmproxy: cannot reach the admin API at tcp://127.0.0.1:")


def test_status_of_something_else_than_the_admin_api(tmp_path: Path) -> None:
    """An address that answers HTTP, but not as the admin API: said plainly, exit status 1."""
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            assert server.stdout.readline().startswith("Serving HTTP")  # it listens
            result = status(f"tcp://127.0.0.1:{port}")
        finally:
            server.terminate()
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"swarmproxy: tcp://127.0.0.1:{port} answered 404 without JSON: is it the admin API?\n"
    )


def test_status_with_a_bad_address_is_a_usage_error() -> None:
    result = status("127.0.0.1:2376")
    assert result.returncode == 2
    assert "argument --admin: '127.0.0.1:2376' is not tcp://HOST:PORT" in result.stderr


def test_storage_outage_as_a_report() -> None:
    """What an outage looks like (the e2e outage tests stop Redis; here, the words only)."""
    health = {
        "Status": "unready",
        "Storage": {"Available": False, "Since": "2026-11-25T03:00:00Z", "Error": "refused"},
        "ReadyNodes": 2,
    }
    assert _report(health).splitlines() == [
        "proxy:    unready",
        "storage:  unavailable since 2026-11-25T03:00:00Z: refused",
        "nodes:    2 taking containers",
    ]
