"""The authorization policy through a real proxy over real nodes, driven with the docker CLI:
what [policy] refuses is answered 403 with the rule and the offending part of the request,
and without a policy the same requests reach the daemons, which accept them."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from swarmproxy.local_nodes import DockerNode
from tests.conftest import clear
from tests.rig.certs import Authority, Issued, docker_cert_path
from tests.rig.proxy import ListenerTLS, Proxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

POLICY = """
[policy]
allow_privileged = false
allowed_bind_paths = ["/tmp"]
allowed_devices = []
allowed_host_namespaces = []
denied_endpoints = ["POST /build"]
"""
PRIVILEGED = "authorization denied by policy rule allow_privileged: HostConfig.Privileged is true"
ROOT_BIND = (
    "authorization denied by policy rule allowed_bind_paths: HostConfig.Binds '/:/host' "
    "mounts host path / (allowed: /tmp)"
)


@pytest.fixture(scope="module")
def guarded(nodes: list[DockerNode], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    proxy = Proxy.start(tmp_path_factory.mktemp("proxy-policy"), nodes, extra_toml=POLICY)
    try:
        yield proxy
    finally:
        clear(proxy, nodes)
        proxy.stop()


@pytest.fixture(scope="module")
def open_proxy(
    nodes: list[DockerNode], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    proxy = Proxy.start(tmp_path_factory.mktemp("proxy-no-policy"), nodes)
    try:
        yield proxy
    finally:
        clear(proxy, nodes)
        proxy.stop()


def refusal(proxy: Proxy, method: str, path: str, body: object) -> str:
    status, answer = proxy.json(method, path, body)
    assert status == 403, answer
    return str(answer["message"])


# --- with a policy -------------------------------------------------------------------------


def test_docker_run_privileged_is_refused(guarded: Proxy) -> None:
    result = guarded.docker("run", "--rm", "--privileged", "busybox", "true", check=False)
    assert result.returncode != 0
    assert PRIVILEGED in result.stderr
    body = {"Image": "busybox", "HostConfig": {"Privileged": True}}
    assert refusal(guarded, "POST", "/v1.41/containers/create", body) == PRIVILEGED
    guarded.wait_logged("rule=allow_privileged")


def test_docker_run_with_the_hosts_root_mounted_is_refused(guarded: Proxy) -> None:
    result = guarded.docker("run", "--rm", "-v", "/:/host", "busybox", "true", check=False)
    assert result.returncode != 0
    assert ROOT_BIND in result.stderr
    escape = guarded.docker("run", "--rm", "-v", "/tmp/../etc:/e", "busybox", "true", check=False)
    assert "mounts host path /etc (allowed: /tmp)" in escape.stderr
    mount = guarded.docker(
        "run", "--rm", "--mount", "type=bind,src=/,dst=/host", "busybox", "true", check=False
    )
    assert "HostConfig.Mounts source '/' mounts host path /" in mount.stderr


def test_what_the_rules_allow_runs(guarded: Proxy) -> None:
    result = guarded.docker("run", "--rm", "-v", "/tmp:/t:ro", "busybox", "test", "-d", "/t")
    assert result.returncode == 0
    assert guarded.docker("run", "--rm", "busybox", "echo", "fine").stdout == "fine\n"


def test_the_deprecated_top_level_host_config_is_judged_too(guarded: Proxy) -> None:
    body = {"Image": "busybox", "Cmd": ["true"], "Privileged": True}
    assert refusal(guarded, "POST", "/containers/create", body) == (
        "authorization denied by policy rule allow_privileged: Privileged is true"
    )
    lower = {"image": "busybox", "hostconfig": {"networkmode": "host"}}
    assert refusal(guarded, "POST", "/containers/create", lower).endswith(
        'HostConfig.NetworkMode "host" shares the host\'s network namespace (none is allowed)'
    )


def test_privileged_exec_is_refused_and_a_plain_one_runs(guarded: Proxy) -> None:
    guarded.docker("run", "-d", "--name", "policy-exec", "busybox", "sleep", "300")
    result = guarded.docker("exec", "--privileged", "policy-exec", "true", check=False)
    assert result.returncode != 0
    assert "authorization denied by policy rule allow_privileged: Privileged is true" in (
        result.stderr
    )
    assert guarded.docker("exec", "policy-exec", "echo", "in").stdout == "in\n"


def test_an_update_is_judged_and_otherwise_reaches_the_node(guarded: Proxy) -> None:
    guarded.docker("run", "-d", "--name", "policy-update", "busybox", "sleep", "300")
    devices = {"Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda"}]}
    message = refusal(guarded, "POST", "/containers/policy-update/update", devices)
    assert message.endswith("Devices gives host device /dev/sda (no device is allowed)")
    # The body read for the rules is the one the node gets.
    guarded.docker("update", "--memory", "64m", "--memory-swap", "128m", "policy-update")
    inspected = json.loads(guarded.docker("inspect", "policy-update").stdout)[0]
    assert inspected["HostConfig"]["Memory"] == 64 * 1024 * 1024


def test_a_local_volume_over_a_host_path_is_refused(guarded: Proxy) -> None:
    result = guarded.docker(
        *("volume", "create", "--opt", "type=none", "--opt", "device=/etc"),
        *("--opt", "o=bind", "policy-etc"),
        check=False,
    )
    assert result.returncode != 0
    assert "DriverOpts device '/etc' mounts host path /etc (allowed: /tmp)" in result.stderr


def test_a_denied_endpoint_is_refused_before_its_upload(
    guarded: Proxy, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    result = guarded.docker("build", "-q", str(tmp_path), env={"DOCKER_BUILDKIT": "0"}, check=False)
    assert result.returncode != 0
    assert (
        "authorization denied by policy rule denied_endpoints: POST /build matches 'POST /build'"
        in result.stderr
    )


# --- without one ---------------------------------------------------------------------------


def test_without_a_policy_privileged_and_the_hosts_root_are_allowed(open_proxy: Proxy) -> None:
    # Created, not run: runc cannot start a privileged container where the nodes' own
    # bounding set lacks a capability (CAP_SYS_RESOURCE in some CI sandboxes); that is the
    # node's refusal, the proxy's part is to let the request through.
    open_proxy.docker("create", "--privileged", "--name", "policy-privileged", "busybox", "true")
    inspected = json.loads(open_proxy.docker("inspect", "policy-privileged").stdout)[0]
    assert inspected["HostConfig"]["Privileged"] is True
    root = open_proxy.docker("run", "--rm", "-v", "/:/host", "busybox", "test", "-d", "/host/etc")
    assert root.returncode == 0


def test_the_daemon_does_take_host_config_fields_at_the_top_level(open_proxy: Proxy) -> None:
    """Why the policy judges them: the nodes' daemon makes this container privileged."""
    body = {"Image": "busybox", "Cmd": ["true"], "Privileged": True}
    status, created = open_proxy.json("POST", "/containers/create?name=policy-top", body)
    assert status == 201, created
    inspected = json.loads(open_proxy.docker("inspect", "policy-top").stdout)[0]
    assert inspected["HostConfig"]["Privileged"] is True


# --- per client certificate ----------------------------------------------------------------


@dataclass(frozen=True)
class Clients:
    proxy: Proxy
    # DOCKER_CERT_PATHs by client
    ci_runner: pathlib.Path
    dashboard: pathlib.Path
    anyone: pathlib.Path


@pytest.fixture(scope="module")
def by_client(
    nodes: list[DockerNode], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Clients]:
    workdir = tmp_path_factory.mktemp("proxy-policy-clients")
    ca = Authority(workdir / "ca", "policy test CA")
    server = ca.issue("server", server=True)

    def cert_path(name: str) -> pathlib.Path:
        client: Issued = ca.issue(name)
        return docker_cert_path(workdir / "certs" / name, ca.cert, client)

    listener = ListenerTLS(server.cert, server.key, ca.cert, cert_path("rig"))
    clients_toml = POLICY + (
        '[[policy.clients]]\nsubject = "CN=ci-runner"\n\n'
        '[[policy.clients]]\nsubject = "CN=dashboard"\nallowed_endpoints = ["GET *", "HEAD *"]\n'
    )
    proxy = Proxy.start(workdir, nodes[:1], extra_toml=clients_toml, tls=listener)
    try:
        yield Clients(proxy, cert_path("ci-runner"), cert_path("dashboard"), cert_path("anyone"))
    finally:
        clear(proxy, nodes[:1])
        proxy.stop()


def test_a_client_certificate_picks_its_rule_set(by_client: Clients) -> None:
    proxy = by_client.proxy

    def create_privileged(cert_path: pathlib.Path) -> tuple[int, str]:
        result = proxy.docker(
            *("create", "--privileged", "busybox", "true"),
            env={"DOCKER_CERT_PATH": str(cert_path)},
            check=False,
        )
        return result.returncode, result.stderr

    assert create_privileged(by_client.ci_runner) == (0, "")
    code, stderr = create_privileged(by_client.anyone)
    assert code != 0
    assert PRIVILEGED in stderr
    code, stderr = create_privileged(by_client.dashboard)
    assert code != 0
    assert (
        "authorization denied by policy rule allowed_endpoints for client CN=dashboard: "
        "POST /containers/create matches none of them"
    ) in stderr
    listing = proxy.docker("ps", "-a", env={"DOCKER_CERT_PATH": str(by_client.dashboard)})
    assert listing.returncode == 0
