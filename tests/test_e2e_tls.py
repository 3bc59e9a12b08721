"""TLS at both ends: a dockerd that accepts only clients with a certificate from the test CA,
and the proxy's own listener with client certificates required, driven with the docker CLI."""

from __future__ import annotations

import json
import pathlib
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from swarmproxy.local_nodes import DaemonTLS, DockerNode, run_docker, start_nodes, stop_nodes
from tests.rig.certs import Authority, Issued, docker_cert_path
from tests.rig.proxy import ListenerTLS, Proxy
from tests.rig.redis import RedisServer
from tests.rig.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@dataclass(frozen=True)
class PKI:
    ca: Authority
    server: Issued
    client: Issued
    # A CA nobody trusts, and a client certificate from it.
    rogue: Authority
    rogue_client: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    ca = Authority(directory / "ca", "swarmproxy test CA")
    rogue = Authority(directory / "rogue", "rogue test CA")
    return PKI(
        ca=ca,
        server=ca.issue("server", server=True),
        client=ca.issue("client"),
        rogue=rogue,
        rogue_client=rogue.issue("rogue-client"),
    )


@pytest.fixture(scope="module")
def tls_node(pki: PKI) -> Iterator[DockerNode]:
    daemon_tls = DaemonTLS(
        ca=pki.ca.cert,
        cert=pki.server.cert,
        key=pki.server.key,
        client_cert=pki.client.cert,
        client_key=pki.client.key,
    )
    (node,) = start_nodes(1, tls=daemon_tls)
    node.name = "tls-node"
    try:
        yield node
    finally:
        stop_nodes([node])


@pytest.fixture(scope="module")
def tls_only(
    pki: PKI, tls_node: DockerNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    """A plain listener in front of the TLS node alone, given as inline PEMs (as a node
    registered through an API would be): everything goes over TLS to the node."""
    inline = {
        "tls_ca_pem": pki.ca.cert.read_text(),
        "tls_cert_pem": pki.client.cert.read_text(),
        "tls_key_pem": pki.client.key.read_text(),
    }
    proxy = Proxy.start(
        tmp_path_factory.mktemp("proxy-tls-node"), [tls_node], node_tls={tls_node.name: inline}
    )
    try:
        yield proxy
    finally:
        proxy.stop()
        tls_node.remove_all_containers()


@pytest.fixture(scope="module")
def mutual(
    pki: PKI,
    tls_node: DockerNode,
    nodes: list[DockerNode],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proxy]:
    """A TLS listener that requires client certificates, in front of the TLS node (its files
    in [[nodes]]) and a plain one."""
    workdir = tmp_path_factory.mktemp("proxy-mutual")
    listener = ListenerTLS(
        cert=pki.server.cert,
        key=pki.server.key,
        client_ca=pki.ca.cert,
        cert_path=docker_cert_path(workdir / "certs", pki.ca.cert, pki.client),
    )
    proxy = Proxy.start(workdir, [tls_node, nodes[0]], tls=listener)
    try:
        yield proxy
    finally:
        proxy.stop()
        tls_node.remove_all_containers()
        nodes[0].remove_all_containers()


def node_of(proxy: Proxy, container: str) -> str:
    inspected = json.loads(proxy.docker("inspect", container).stdout)
    return str(inspected[0]["Node"]["Name"])


# --- (a) a node over TLS ---------------------------------------------------------------------


def test_run_logs_and_exec_on_a_tls_node(tls_only: Proxy, tls_node: DockerNode) -> None:
    assert tls_only.docker("run", "--rm", "busybox", "echo", "hi").stdout == "hi\n"
    container = tls_only.docker(
        "run", "-d", "busybox", "sh", "-c", "echo started; sleep 300"
    ).stdout.strip()
    try:
        assert container in tls_node.container_ids()
        assert node_of(tls_only, container) == tls_node.name
        assert tls_only.docker("logs", container).stdout == "started\n"
        # Hijacked over TLS: stdin's end reaches the node as a close_notify, and `cat`'s
        # output still comes back after it.
        piped = tls_only.docker("exec", "-i", container, "cat", input="over tls\n")
        assert piped.stdout == "over tls\n"
        big = "".join(f"line {i}\n" for i in range(20000))
        assert tls_only.docker("exec", "-i", container, "cat", input=big).stdout == big
    finally:
        tls_only.docker("rm", "-f", container)


def test_attach_with_stdin_on_a_tls_node(tls_only: Proxy) -> None:
    piped = tls_only.docker("run", "-i", "--rm", "busybox", "cat", input="attached\n")
    assert piped.stdout == "attached\n"


def test_info_shows_the_tls_node_ready(tls_only: Proxy, tls_node: DockerNode) -> None:
    info = tls_only.docker("info").stdout
    assert " Nodes: 1" in info
    assert f"  {tls_node.name}: {tls_node.tcp_address}" in info
    assert "└ Status: ready\n" in info


def test_a_node_whose_certificate_is_not_trusted_is_unavailable(
    pki: PKI, tls_node: DockerNode, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The node's certificate is verified against the configured CA, not merely accepted."""
    wrong_ca = {
        "tls_ca": str(pki.rogue.cert),
        "tls_cert": str(pki.client.cert),
        "tls_key": str(pki.client.key),
    }
    proxy = Proxy.start(
        tmp_path_factory.mktemp("proxy-wrong-ca"), [tls_node], node_tls={tls_node.name: wrong_ca}
    )
    try:
        assert "└ Status: ready\n" not in proxy.docker("info").stdout
        failed = proxy.docker("run", "--rm", "busybox", "true", check=False)
        assert failed.returncode != 0
        proxy.wait_logged("CERTIFICATE_VERIFY_FAILED")
    finally:
        proxy.stop()


# --- (b) the proxy's listener over TLS --------------------------------------------------------


def test_docker_cli_with_a_client_certificate(
    mutual: Proxy, tls_node: DockerNode, nodes: list[DockerNode]
) -> None:
    info = mutual.docker("info").stdout
    assert " Nodes: 2" in info
    assert info.count("└ Status: ready\n") == 2
    # Round robin: one on each node, so both kinds of node are reached through TLS.
    placed = {}
    for _ in range(2):
        container = mutual.docker("run", "-d", "busybox", "sleep", "300").stdout.strip()
        placed[node_of(mutual, container)] = container
    try:
        assert set(placed) == {tls_node.name, nodes[0].name}
        for container in placed.values():
            # stdin's end crosses the TLS listener too, whatever the node.
            piped = mutual.docker("exec", "-i", container, "cat", input="both ends\n")
            assert piped.stdout == "both ends\n"
        for _ in range(2):
            assert mutual.docker("run", "--rm", "busybox", "echo", "hi").stdout == "hi\n"
    finally:
        mutual.docker("rm", "-f", *placed.values())


def test_large_streams_cross_both_tls_ends(mutual: Proxy) -> None:
    """Megabytes each way, through the TLS listener and (on one of the two runs) the TLS
    node: both sides' flow control hold, and nothing is lost at either end."""
    data = "".join(f"{i:07d} the quick brown fox\n" for i in range(200_000))
    for _ in range(2):
        echoed = mutual.docker("run", "-i", "--rm", "busybox", "cat", input=data, timeout=120)
        assert echoed.stdout == data
        out = mutual.docker("run", "--rm", "busybox", "sh", "-c", "yes hello | head -n 1000000")
        assert out.stdout == "hello\n" * 1_000_000


@pytest.mark.parametrize("client", ["no certificate", "another CA's certificate"])
def test_a_client_without_a_trusted_certificate_is_refused(
    mutual: Proxy, pki: PKI, tmp_path: pathlib.Path, client: str
) -> None:
    cert = None if client == "no certificate" else pki.rogue_client
    cert_path = docker_cert_path(tmp_path / "certs", pki.ca.cert, cert)
    refused = mutual.docker("version", check=False, env={"DOCKER_CERT_PATH": str(cert_path)})
    assert refused.returncode != 0
    assert "tls:" in refused.stderr
    assert "Server:" not in refused.stdout
    # The refusal is the handshake's, and the proxy serves the next client as before.
    mutual.wait_logged("tls handshake failed")
    assert mutual.docker("version").returncode == 0


def test_a_client_that_does_not_trust_the_proxy_refuses_it(
    mutual: Proxy, pki: PKI, tmp_path: pathlib.Path
) -> None:
    cert_path = docker_cert_path(tmp_path / "certs", pki.rogue.cert, pki.client)
    refused = mutual.docker("version", check=False, env={"DOCKER_CERT_PATH": str(cert_path)})
    assert refused.returncode != 0
    assert "x509" in refused.stderr


def test_a_plain_http_client_gets_nothing(mutual: Proxy, tmp_path: pathlib.Path) -> None:
    plain = run_docker(mutual.address, tmp_path, "version", check=False, timeout=30)
    assert plain.returncode != 0
    assert "Server:" not in plain.stdout


def test_a_tls_client_without_a_certificate_fails_at_the_handshake(mutual: Proxy, pki: PKI) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    raw = socket.create_connection(("127.0.0.1", mutual.port), timeout=10)
    # TLS 1.3 reports a refused client certificate on the first read, not in the handshake.
    with pytest.raises(ssl.SSLError), context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        tls.recv(1024)


# --- (c) a TLS node registered at run time ---------------------------------------------------


def test_a_tls_node_added_through_the_admin_api_serves_every_replica(
    pki: PKI,
    tls_node: DockerNode,
    nodes: list[DockerNode],
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """`swarmproxy node add --tls-*` sends the PEMs; the node's record keeps them, so the
    other replica, whose config knows nothing of the node, reaches it over TLS too."""
    prefix = f"sp-tls-{time.monotonic_ns()}:"
    first, second = (
        Proxy.start(
            tmp_path_factory.mktemp(f"tls-replica-{i}"), nodes[:1], redis_server.url, prefix
        )
        for i in (1, 2)
    )
    try:
        first.node_cli(
            "add",
            tls_node.tcp_address,
            "--name",
            "late-tls",
            "--tls-ca",
            str(pki.ca.cert),
            "--tls-cert",
            str(pki.client.cert),
            "--tls-key",
            str(pki.client.key),
        )
        # Only the TLS node takes new containers.
        second.node_cli("drain", nodes[0].name)
        wait_for(lambda: "late-tls: " in second.docker("info").stdout, 15)
        listed = second.admin("GET", "/swarmproxy/v1/nodes/late-tls")[1]
        assert listed["TLS"] is True
        assert "BEGIN" not in json.dumps(listed)  # the key never leaves the proxy
        wait_for(lambda: listed_status(second, "late-tls") == "ready", 15)
        echoed = second.docker("run", "--rm", "busybox", "echo", "over tls")
        assert echoed.stdout == "over tls\n"
        container = second.docker("run", "-d", "busybox", "sleep", "300").stdout.strip()
        assert container in tls_node.container_ids()
        assert first.docker("exec", container, "echo", "hi").stdout == "hi\n"
    finally:
        for proxy in (first, second):
            proxy.stop()
        tls_node.remove_all_containers()


def test_a_node_add_with_a_bad_pem_is_refused(mutual: Proxy, tls_node: DockerNode) -> None:
    status, body = mutual.admin(
        "POST",
        "/swarmproxy/v1/nodes",
        {"address": "tcp://127.0.0.1:1", "name": "bad", "tls_ca_pem": "not a certificate"},
    )
    assert status == 400
    assert "tls_ca_pem" in body["message"]


def listed_status(proxy: Proxy, name: str) -> str:
    return str(proxy.admin("GET", f"/swarmproxy/v1/nodes/{name}")[1]["Status"])
