"""swarmproxy.policy: the authorization rules, read from [policy] and judged against requests
as the daemon's Go decoder would read their bodies."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from swarmproxy.api.policy import authorize, set_policy
from swarmproxy.api.routes import ROUTES, VERSION_PREFIX
from swarmproxy.config import ConfigError, from_dict, load
from swarmproxy.policy import (
    BODY_ROUTES,
    RULE_KEYS,
    Policy,
    PolicyError,
    Refusal,
    format_subject,
    parse_policy,
    parse_subject,
    subject_of_certificate,
)
from tests.rig.certs import Authority

CREATE = "/containers/create"
EXEC = "/containers/{id}/exec"
UPDATE = "/containers/{id}/update"
VOLUME = "/volumes/create"
PATHS = {
    CREATE: "/v1.41/containers/create",
    EXEC: "/containers/abc/exec",
    UPDATE: "/containers/abc/update",
    VOLUME: "/volumes/create",
}


def policy(**rules: Any) -> Policy:
    return parse_policy(rules)


def judge(p: Policy, route: str, body: Any, subject: Any = None) -> Refusal | None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert p.needs_body("POST", route, subject)
    return p.check("POST", PATHS[route], subject, route=route, body=data)


def refused(p: Policy, route: str, body: Any, rule: str) -> str:
    refusal = judge(p, route, body)
    assert refusal is not None, f"{body} was let through"
    assert refusal.rule == rule
    return refusal.message


def allowed(p: Policy, route: str, body: Any) -> None:
    refusal = judge(p, route, body)
    assert refusal is None, refusal.message


def create(**host_config: Any) -> dict[str, Any]:
    return {"Image": "busybox", "HostConfig": host_config}


# --- off by default ------------------------------------------------------------------------


def test_no_policy_refuses_nothing_and_reads_no_body() -> None:
    p = Policy()
    assert not p.enabled
    assert not p.needs_body("POST", CREATE, None)
    assert p.check("POST", "/containers/create", body=b'{"HostConfig":{"Privileged":true}}') is None
    assert from_dict({}).policy == Policy()
    assert not from_dict({"policy": {}}).policy.enabled


def test_endpoint_rules_alone_read_no_body() -> None:
    p = policy(denied_endpoints=["POST /build"])
    assert p.enabled
    assert not p.needs_body("POST", CREATE, None)


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("POST", "/build"),
        ("POST", "/images/load"),
        ("POST", "/images/create"),
        ("PUT", "/containers/{id}/archive"),
        ("POST", "/containers/{id}/start"),
        ("GET", CREATE),
    ],
)
def test_streamed_and_other_bodies_are_never_read(method: str, route: str) -> None:
    p = policy(allow_privileged=False, allowed_bind_paths=[], allowed_devices=[])
    assert not p.needs_body(method, route, None)


def test_the_body_routes_are_post_routes_of_the_routing_table() -> None:
    posts = {route.path for route in ROUTES if route.method == "POST"}
    assert BODY_ROUTES.issubset(posts)


# --- privileged ----------------------------------------------------------------------------


def test_privileged_container_and_exec() -> None:
    p = policy(allow_privileged=False)
    message = refused(p, CREATE, create(Privileged=True), "allow_privileged")
    assert message == (
        "authorization denied by policy rule allow_privileged: HostConfig.Privileged is true"
    )
    allowed(p, CREATE, create(Privileged=False))
    allowed(p, CREATE, {"Image": "busybox"})
    refused(p, EXEC, {"Cmd": ["sh"], "Privileged": True}, "allow_privileged")
    allowed(p, EXEC, {"Cmd": ["sh"]})


@pytest.mark.parametrize(
    "body",
    [
        # Go's decoder matches keys without regard to case, Unicode folds included.
        b'{"hostconfig": {"privileged": true}}',
        b'{"HOSTCONFIG": {"PRIVILEGED": true}}',
        '{"Ho\u017ftConfig": {"Privileged": true}}'.encode(),
        # Duplicates: whichever one the daemon keeps, one of them is privileged.
        b'{"HostConfig": {"Privileged": true, "Privileged": false}}',
        b'{"HostConfig": {"Privileged": true}, "hostConfig": {}}',
        # Older daemons read HostConfig's fields at the top level too.
        b'{"Image": "busybox", "Privileged": true}',
        # Only the first JSON value counts, as with Go's json.Decoder.
        b'{"HostConfig": {"Privileged": true}} trailing bytes',
        b'  \n{"HostConfig": {"Privileged": true}}',
    ],
)
def test_privileged_however_the_body_spells_it(body: bytes) -> None:
    refused(policy(allow_privileged=False), CREATE, body, "allow_privileged")


@pytest.mark.parametrize("body", [b"null", b"[]", b'"text"', b"{}"])
def test_a_body_without_an_object_breaks_no_rule(body: bytes) -> None:
    allowed(policy(allow_privileged=False), CREATE, body)


@pytest.mark.parametrize(
    "body", [b"", b"{", b"not json", b'{"HostConfig": ' * 5000 + b"{}" + b"}" * 5000]
)
def test_a_body_that_cannot_be_read_is_refused(body: bytes) -> None:
    refusal = judge(policy(allow_privileged=False), CREATE, body)
    assert refusal is not None
    assert refusal.message.startswith(
        "authorization denied by policy: the request body cannot be checked"
    )


# --- bind mounts ---------------------------------------------------------------------------


def test_the_root_of_the_host_is_refusable() -> None:
    p = policy(allowed_bind_paths=["/srv"])
    message = refused(p, CREATE, create(Binds=["/:/host"]), "allowed_bind_paths")
    assert message == (
        "authorization denied by policy rule allowed_bind_paths: HostConfig.Binds '/:/host' "
        "mounts host path / (allowed: /srv)"
    )


@pytest.mark.parametrize(
    "bind",
    [
        "/srv/data:/data",
        "/srv:/srv:ro",
        "/srv/./x/../y:/y:rw,z",
        "//srv/data:/data",
        # Not host paths: a named volume, an anonymous one.
        "cache:/cache",
        "/anonymous",
    ],
)
def test_binds_inside_the_allowed_paths(bind: str) -> None:
    allowed(policy(allowed_bind_paths=["/srv", "/tmp/work/"]), CREATE, create(Binds=[bind]))


@pytest.mark.parametrize(
    "bind",
    ["/srv/../etc:/x", "/srvx:/x", "/etc/shadow:/s:ro", "/tmp/work/../../etc:/x", "/tmp:/t"],
)
def test_binds_outside_the_allowed_paths(bind: str) -> None:
    p = policy(allowed_bind_paths=["/srv", "/tmp/work/"])
    refused(p, CREATE, create(Binds=["/srv/ok:/ok", bind]), "allowed_bind_paths")


def test_an_empty_list_allows_no_host_path() -> None:
    p = policy(allowed_bind_paths=[])
    message = refused(p, CREATE, create(Binds=["/srv:/srv"]), "allowed_bind_paths")
    assert message.endswith("(no host path is allowed)")
    allowed(p, CREATE, create(Binds=["data:/data"]))


def test_bind_mounts() -> None:
    p = policy(allowed_bind_paths=["/srv"])
    outside = {"Type": "bind", "Source": "/var/run/docker.sock", "Target": "/s"}
    message = refused(p, CREATE, create(Mounts=[outside]), "allowed_bind_paths")
    assert "HostConfig.Mounts source '/var/run/docker.sock'" in message
    refused(p, CREATE, create(mounts=[{"type": "BIND", "source": "/"}]), "allowed_bind_paths")
    allowed(p, CREATE, create(Mounts=[{"Type": "bind", "Source": "/srv/x", "Target": "/x"}]))
    allowed(p, CREATE, create(Mounts=[{"Type": "volume", "Source": "/srv-name", "Target": "/x"}]))
    allowed(p, CREATE, create(Mounts=[{"Type": "tmpfs", "Target": "/x"}]))


def local_volume(device: str, kind: str = "none", options: str = "bind") -> dict[str, str]:
    return {"type": kind, "device": device, "o": options}


def test_local_volumes_over_host_paths_are_bind_mounts() -> None:
    p = policy(allowed_bind_paths=["/srv"])
    mount = {
        "Type": "volume",
        "Target": "/x",
        "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": local_volume("/etc")}},
    }
    message = refused(p, CREATE, create(Mounts=[mount]), "allowed_bind_paths")
    assert "HostConfig.Mounts volume device '/etc' mounts host path /etc" in message
    message = refused(
        p, VOLUME, {"Name": "v", "DriverOpts": local_volume("/")}, "allowed_bind_paths"
    )
    assert "DriverOpts device '/'" in message
    # A block device mounted as a file system is the host's disk all the same.
    refused(p, VOLUME, {"DriverOpts": local_volume("/dev/sda1", "ext4", "")}, "allowed_bind_paths")
    allowed(p, VOLUME, {"Name": "v", "DriverOpts": local_volume("/srv/v")})
    allowed(p, VOLUME, {"Name": "v", "DriverOpts": local_volume(":/export", "nfs", "addr=1.2.3.4")})
    allowed(p, VOLUME, {"Name": "v", "DriverOpts": local_volume("/export", "nfs4", "addr=x")})
    allowed(p, VOLUME, {"Name": "v"})
    # Another driver's options are its own (a plugin the node's operator installed).
    allowed(p, VOLUME, {"Driver": "nfs-plugin", "DriverOpts": local_volume("/")})
    # A Go map's keys match exactly: "Device" is not the local driver's `device`.
    allowed(p, VOLUME, {"DriverOpts": {"type": "none", "Device": "/", "o": "bind"}})


# --- host namespaces -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "namespace"),
    [
        ("NetworkMode", "network"),
        ("PidMode", "pid"),
        ("IpcMode", "ipc"),
        ("UTSMode", "uts"),
        ("UsernsMode", "userns"),
        ("CgroupnsMode", "cgroup"),
    ],
)
def test_host_namespaces(key: str, namespace: str) -> None:
    message = refused(
        policy(allowed_host_namespaces=[]),
        CREATE,
        create(**{key: "host"}),
        "allowed_host_namespaces",
    )
    assert message.endswith(
        f'HostConfig.{key} "host" shares the host\'s {namespace} namespace (none is allowed)'
    )
    allowed(policy(allowed_host_namespaces=[namespace]), CREATE, create(**{key: "host"}))


def test_other_namespace_modes_are_not_the_hosts() -> None:
    p = policy(allowed_host_namespaces=["network"])
    allowed(p, CREATE, create(NetworkMode="host", PidMode="container:web", IpcMode="private"))
    allowed(p, CREATE, create(NetworkMode="bridge", UsernsMode=""))
    message = refused(
        p, CREATE, create(NetworkMode="host", PidMode="HOST"), "allowed_host_namespaces"
    )
    assert message.endswith("(allowed: network)")


# --- capabilities --------------------------------------------------------------------------


def test_added_capabilities() -> None:
    p = policy(allowed_capabilities=["NET_ADMIN", "cap_sys_time"])
    allowed(p, CREATE, create(CapAdd=["NET_ADMIN", "CAP_SYS_TIME", "cap_net_admin"]))
    allowed(p, CREATE, create(CapDrop=["ALL"]))
    message = refused(p, CREATE, create(CapAdd=["NET_ADMIN", "SYS_ADMIN"]), "allowed_capabilities")
    assert message.endswith("HostConfig.CapAdd adds SYS_ADMIN (allowed: NET_ADMIN, SYS_TIME)")
    refused(p, CREATE, create(CapAdd=["ALL"]), "allowed_capabilities")
    # The daemon takes one string for a list.
    refused(p, CREATE, create(CapAdd="SYS_ADMIN"), "allowed_capabilities")
    refused(p, CREATE, create(Capabilities=["CAP_SYS_ADMIN"]), "allowed_capabilities")
    allowed(policy(allowed_capabilities=["ALL"]), CREATE, create(CapAdd=["SYS_ADMIN"]))
    refused(
        policy(allowed_capabilities=[]), CREATE, create(CapAdd=["CHOWN"]), "allowed_capabilities"
    )


# --- devices -------------------------------------------------------------------------------


def test_devices() -> None:
    p = policy(allowed_devices=["/dev/fuse", "/dev/dri"])
    fuse = {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}
    allowed(p, CREATE, create(Devices=[fuse, {"PathOnHost": "/dev/dri/card0"}]))
    message = refused(p, CREATE, create(Devices=[{"PathOnHost": "/dev/sda"}]), "allowed_devices")
    assert message.endswith(
        "HostConfig.Devices gives host device /dev/sda (allowed: /dev/fuse, /dev/dri)"
    )
    refused(p, CREATE, create(Devices=[{"PathOnHost": "/dev/fuse/../sda"}]), "allowed_devices")
    refused(p, CREATE, create(DeviceCgroupRules=["b 8:* rmw"]), "allowed_devices")
    refused(p, CREATE, create(DeviceRequests=[{"Count": -1}]), "allowed_devices")
    allowed(p, CREATE, create(DeviceCgroupRules=[], DeviceRequests=None))


def test_devices_in_a_container_update() -> None:
    p = policy(allowed_devices=[])
    refused(p, UPDATE, {"Devices": [{"PathOnHost": "/dev/sda"}]}, "allowed_devices")
    refused(p, UPDATE, {"DeviceCgroupRules": ["a *:* rwm"]}, "allowed_devices")
    allowed(p, UPDATE, {"Memory": 314572800, "RestartPolicy": {"Name": "always"}})


# --- endpoints -----------------------------------------------------------------------------


def test_denied_endpoints() -> None:
    p = policy(denied_endpoints=["POST /containers/*/exec", "* /build", "delete /images/*"])
    refusal = p.check("POST", "/v1.41/containers/web/exec")
    assert refusal is not None
    assert refusal.message == (
        "authorization denied by policy rule denied_endpoints: "
        "POST /containers/web/exec matches 'POST /containers/*/exec'"
    )
    assert p.check("GET", "/build") is not None
    assert p.check("DELETE", "/images/team/app:1") is not None
    assert p.check("POST", "/containers/web/start") is None
    assert p.check("GET", "/images/json") is None


@pytest.mark.parametrize(
    "path",
    [
        "/containers/web/exec",
        "/v1.24/containers/web/exec",
        "//containers/web/exec",
        "/containers/./web/exec",
        "/containers/x/../web/exec",
    ],
)
def test_endpoint_paths_are_normalised(path: str) -> None:
    assert policy(denied_endpoints=["POST /containers/*/exec"]).check("POST", path) is not None


def test_a_read_only_client() -> None:
    p = policy(allowed_endpoints=["GET *", "HEAD *"], denied_endpoints=["GET /containers/*/export"])
    assert p.check("GET", "/v1.41/containers/json") is None
    assert p.check("HEAD", "/_ping") is None
    refusal = p.check("POST", "/v1.41/containers/create")
    assert refusal is not None
    assert refusal.message == (
        "authorization denied by policy rule allowed_endpoints: "
        "POST /containers/create matches none of them"
    )
    assert p.check("DELETE", "/containers/web") is not None
    assert p.check("GET", "/containers/web/export") is not None


# --- clients -------------------------------------------------------------------------------


def peercert(*attributes: tuple[str, str]) -> dict[str, Any]:
    """What ssl's getpeercert() gives: the subject as a tuple of RDNs of (name, value)."""
    return {"subject": tuple(((name, value),) for name, value in attributes), "version": 3}


def test_subjects() -> None:
    assert parse_subject("CN=ci-runner, O=acme") == (
        ("commonName", "ci-runner"),
        ("organizationName", "acme"),
    )
    assert parse_subject("commonName=a\\,b") == (("commonName", "a,b"),)
    assert format_subject(parse_subject("cn=x,ou=ci")) == "CN=x,OU=ci"
    cert = peercert(("organizationName", "acme"), ("commonName", "ci-runner"))
    assert subject_of_certificate(cert) == (
        ("organizationName", "acme"),
        ("commonName", "ci-runner"),
    )
    assert subject_of_certificate(None) is None
    assert subject_of_certificate({}) is None
    for bad in ("ci-runner", "CN=", "XX=1", "CN=a,"):
        with pytest.raises(ValueError):
            parse_subject(bad)


def test_a_client_certificate_picks_its_own_rule_set() -> None:
    p = parse_policy(
        {
            "allow_privileged": False,
            "clients": [
                {"subject": "CN=ci-runner, O=acme", "allow_privileged": True},
                {"subject": "CN=dashboard", "allowed_endpoints": ["GET *", "HEAD *"]},
                {"subject": "O=acme", "allowed_bind_paths": []},
            ],
        }
    )
    body = json.dumps(create(Privileged=True, Binds=["/:/host"])).encode()

    def check(subject: Any, method: str = "POST") -> Refusal | None:
        return p.check(method, "/containers/create", subject, route=CREATE, body=body)

    runner = subject_of_certificate(
        peercert(("commonName", "ci-runner"), ("organizationName", "acme"))
    )
    # A table is the client's whole rule set: no privileged rule, no bind rule there.
    assert check(runner) is None
    dashboard = subject_of_certificate(peercert(("commonName", "dashboard")))
    refusal = check(dashboard)
    assert refusal is not None
    assert refusal.message.startswith(
        "authorization denied by policy rule allowed_endpoints for client CN=dashboard: "
    )
    assert check(dashboard, "GET") is None
    # Every attribute of the table's subject must be there; the first matching table wins.
    other = subject_of_certificate(peercert(("commonName", "other"), ("organizationName", "acme")))
    refusal = check(other)
    assert refusal is not None
    assert refusal.rule == "allowed_bind_paths"
    assert refusal.client == "O=acme"
    stranger = subject_of_certificate(peercert(("commonName", "ci-runner")))
    refusal = check(stranger)
    assert refusal is not None
    assert (refusal.rule, refusal.client) == ("allow_privileged", "")
    refusal = check(None)
    assert refusal is not None
    assert refusal.client == ""


# --- the [policy] section ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key", "problem"),
    [
        ({"allow_privileges": False}, "allow_privileges", "unknown key"),
        ({"allow_privileged": "no"}, "allow_privileged", "must be true or false"),
        ({"allowed_bind_paths": "/srv"}, "allowed_bind_paths", "must be a list of strings"),
        ({"allowed_bind_paths": ["srv"]}, "allowed_bind_paths", "'srv' is not an absolute path"),
        ({"allowed_host_namespaces": ["net"]}, "allowed_host_namespaces", "unknown namespace"),
        ({"allowed_capabilities": ["SYS ADMIN"]}, "allowed_capabilities", "not a capability"),
        ({"denied_endpoints": ["/build"]}, "denied_endpoints", 'expected "METHOD PATH"'),
        ({"denied_endpoints": ["FETCH /build"]}, "denied_endpoints", 'expected "METHOD PATH"'),
        ({"allowed_endpoints": ["GET build"]}, "allowed_endpoints", "PATH * or /a/path/glob"),
        ({"clients": {"subject": "CN=x"}}, "clients", "must be an array of tables"),
        ({"clients": [{"allow_privileged": True}]}, "clients[0].subject", "is required"),
        ({"clients": [{"subject": "CN=x", "priv": 1}]}, "clients[0].priv", "unknown key"),
        ({"clients": [{"subject": "name=x"}]}, "clients[0].subject", "unknown attribute"),
        (
            {"clients": [{"subject": "CN=x", "allowed_devices": ["dev"]}]},
            "clients[0].allowed_devices",
            "not an absolute path",
        ),
    ],
)
def test_bad_settings_name_their_key(raw: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(raw)
    assert info.value.setting == key
    assert problem in info.value.problem
    with pytest.raises(ConfigError) as config_info:
        from_dict({"policy": raw})
    assert config_info.value.key == f"policy.{key}"


def test_the_policy_section_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "swarmproxy.toml"
    path.write_text(
        """
        [policy]
        allow_privileged = false
        allowed_bind_paths = ["/srv/data/../data", "/tmp"]
        allowed_host_namespaces = ["network"]
        allowed_capabilities = ["CAP_NET_ADMIN"]
        allowed_devices = ["/dev/fuse"]
        allowed_endpoints = ["GET *", "HEAD *", "POST /containers/**"]
        denied_endpoints = ["POST /containers/*/exec"]
        """
    )
    rules = load(path, env={}).policy.rules
    assert rules.allow_privileged is False
    assert rules.allowed_bind_paths == ("/srv/data", "/tmp")
    assert rules.allowed_host_namespaces == {"network"}
    assert rules.allowed_capabilities == {"NET_ADMIN"}
    assert rules.allowed_devices == ("/dev/fuse",)
    assert [e.text for e in rules.allowed_endpoints or ()] == [
        "GET *",
        "HEAD *",
        "POST /containers/**",
    ]
    assert [e.text for e in rules.denied_endpoints] == ["POST /containers/*/exec"]


def test_policy_from_the_environment() -> None:
    env = {
        "SWARMPROXY_POLICY_ALLOW_PRIVILEGED": "false",
        "SWARMPROXY_POLICY_ALLOWED_BIND_PATHS": "/srv, /tmp",
        "SWARMPROXY_POLICY_ALLOWED_HOST_NAMESPACES": "",
        "SWARMPROXY_POLICY_DENIED_ENDPOINTS": '["POST /build", "DELETE /images/*"]',
    }
    rules = load(None, env=env).policy.rules
    assert rules.allow_privileged is False
    assert rules.allowed_bind_paths == ("/srv", "/tmp")
    assert rules.allowed_host_namespaces == frozenset()
    assert [e.text for e in rules.denied_endpoints] == ["POST /build", "DELETE /images/*"]
    with pytest.raises(ConfigError) as info:
        load(None, env={"SWARMPROXY_POLICY_ALLOW_PRIVILEGED": "maybe"})
    assert info.value.key == "policy.allow_privileged"
    with pytest.raises(ConfigError) as info:
        load(None, env={"SWARMPROXY_POLICY_CLIENTS": "CN=x"})
    assert info.value.key == "SWARMPROXY_POLICY_CLIENTS"


def test_client_tables_need_client_certificates(tmp_path: Path) -> None:
    clients = {"clients": [{"subject": "CN=ci-runner", "allow_privileged": True}]}
    with pytest.raises(ConfigError) as info:
        from_dict({"policy": clients})
    assert str(info.value) == "policy.clients: needs [server.tls] client_ca"
    ca = Authority(tmp_path / "ca", "policy test CA")
    server = ca.issue("server", server=True)
    tls = {"cert": str(server.cert), "key": str(server.key)}
    with pytest.raises(ConfigError):
        from_dict({"server": {"tls": tls}, "policy": clients})
    config = from_dict({"server": {"tls": {**tls, "client_ca": str(ca.cert)}}, "policy": clients})
    assert config.policy.clients[0].subject == (("commonName", "ci-runner"),)


# --- the middleware ------------------------------------------------------------------------


async def echo(request: web.Request) -> web.Response:
    """The body as a handler finds it after the middleware, and whether it was still to be
    streamed (as forward() tells)."""
    streamed = request.can_read_body
    body = await request.content.read() if streamed else await request.read()
    return web.Response(body=body, headers={"Streamed": str(streamed)})


async def test_the_middleware_judges_what_the_router_resolved(
    aiohttp_client: Any,
) -> None:
    app = web.Application(middlewares=[authorize])
    set_policy(app, policy(allow_privileged=False, denied_endpoints=["DELETE *"]))
    for path in ("/containers/create", "/containers/{id}/exec", "/build"):
        app.router.add_post(path, echo)
        app.router.add_post(VERSION_PREFIX + path, echo)
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    privileged = {"HostConfig": {"Privileged": True}}
    for path in ("/containers/create", "/v1.41/containers/create", "/v1.24/containers/x/exec"):
        body = privileged if "create" in path else {"Privileged": True}
        answer = await client.post(path, json=body)
        assert answer.status == 403
        assert (await answer.json())["message"].startswith(
            "authorization denied by policy rule allow_privileged:"
        )
    plain = json.dumps({"Image": "busybox", "HostConfig": {}}).encode()
    answer = await client.post("/v1.41/containers/create", data=plain)
    assert (answer.status, await answer.read()) == (200, plain)
    assert answer.headers["Streamed"] == "False"
    # A build context is not read by the policy: it is streamed to the handler.
    context = b"x" * (1 << 20)
    answer = await client.post("/build", data=context)
    assert (answer.status, len(await answer.read())) == (200, len(context))
    assert answer.headers["Streamed"] == "True"
    answer = await client.delete("/containers/x")
    assert answer.status == 403
    # A swap takes effect at the next request.
    set_policy(app, Policy())
    answer = await client.post("/containers/create", json=privileged)
    assert answer.status == 200


def test_the_example_file_documents_every_rule_in_working_form() -> None:
    """Its [policy] lines are commented out (no rule by default); uncommented they load."""
    text = (Path(__file__).resolve().parent.parent / "config.example.toml").read_text()
    section = text[text.index("\n[policy]\n") : text.index("\n[[nodes]]\n")]
    keys = RULE_KEYS | {"subject"}
    lines = []
    for line in section.splitlines():
        uncommented = line.removeprefix("# ")
        if uncommented.partition(" = ")[0] in keys or uncommented == "[[policy.clients]]":
            lines.append(uncommented)
        elif not line.startswith("#"):
            lines.append(line)
    raw = tomllib.loads("\n".join(lines))["policy"]
    assert set(raw) == RULE_KEYS | {"clients"}
    assert parse_policy(raw).clients[0].rules.allow_privileged
