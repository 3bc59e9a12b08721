"""The authorization policy: rules that refuse what docker-socket-proxy and Docker's
authorization plugins refuse (privileged containers, host bind mounts, host namespaces,
added capabilities, devices, whole endpoints), built in and off by default.

Pure logic: `Policy.check(method, path, subject, body)` says whether a request is refused
and why; the HTTP middleware (swarmproxy.api.policy) feeds it. A client certificate's subject
(`CN=ci-runner`) can pick a rule set of its own.

Bodies are judged as the daemon's Go decoder reads them, which is more lenient than a
naive reading: a JSON key names a field whatever its case (`hostconfig`, `privileged`, even
with Unicode folds such as U+017F, the long s, for `s`), duplicate keys are allowed, only
the first JSON value counts, and older daemons (20.10 among them) also take HostConfig's
fields at the top level of a create. Every candidate value is checked, so which one the
daemon keeps cannot matter.
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

# The host namespaces a container can share, and the HostConfig field asking for each.
NAMESPACE_FIELDS = {
    "network": "NetworkMode",
    "pid": "PidMode",
    "ipc": "IpcMode",
    "uts": "UTSMode",
    "userns": "UsernsMode",
    "cgroup": "CgroupnsMode",
}
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# Local-driver volume types whose `device` is not a host path (a network share, memory).
_REMOTE_VOLUME_TYPES = frozenset({"nfs", "nfs4", "cifs", "smb3", "tmpfs"})
_VERSION_PREFIX = re.compile(r"/v[0-9]+\.[0-9]+(?=/)")
_CAPABILITY = re.compile(r"[A-Z][A-Z0-9_]*")
# Short attribute names of a certificate subject, as `openssl x509 -subject` writes them,
# and the names Python's ssl module gives them.
_SUBJECT_NAMES = {
    "CN": "commonName",
    "O": "organizationName",
    "OU": "organizationalUnitName",
    "C": "countryName",
    "ST": "stateOrProvinceName",
    "L": "localityName",
    "DC": "domainComponent",
    "UID": "userId",
    "EMAILADDRESS": "emailAddress",
    "SERIALNUMBER": "serialNumber",
}
_SHORT_NAMES = {long: short for short, long in _SUBJECT_NAMES.items() if len(short) <= 3}
_LONG_NAMES = {long.lower(): long for long in _SUBJECT_NAMES.values()}

Subject = tuple[tuple[str, str], ...]
T = TypeVar("T")


class PolicyError(Exception):
    """A bad [policy] setting; `setting` names it (`clients[0].subject`)."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


@dataclass(frozen=True)
class Refusal:
    rule: str
    # What in the request broke the rule.
    problem: str
    # Whose rule set it is: "" for everyone's, else the client table's subject.
    client: str = ""

    @property
    def message(self) -> str:
        rule = f" rule {self.rule}" if self.rule else ""
        whose = f" for client {self.client}" if self.client else ""
        return f"authorization denied by policy{rule}{whose}: {self.problem}"


@dataclass(frozen=True)
class Endpoint:
    """`METHOD PATH`: METHOD or `*`, and a shell-style glob of the path without its version
    prefix, where `*` spans slashes too (`/containers/*` is everything under it)."""

    text: str
    method: str
    path: str

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and fnmatch.fnmatchcase(path, self.path)


@dataclass(frozen=True)
class Rules:
    """One rule set. A rule left out allows what the daemon allows; an allowed list that is
    empty allows none."""

    allow_privileged: bool = True
    allowed_bind_paths: tuple[str, ...] | None = None
    allowed_host_namespaces: frozenset[str] | None = None
    allowed_capabilities: frozenset[str] | None = None
    allowed_devices: tuple[str, ...] | None = None
    allowed_endpoints: tuple[Endpoint, ...] | None = None
    denied_endpoints: tuple[Endpoint, ...] = ()

    def needs_body(self, method: str, route: str) -> bool:
        """Whether these rules judge the body of a request to `route` (see BODY_ROUTES)."""
        return (
            method == "POST"
            and route in BODY_ROUTES
            and (
                not self.allow_privileged
                or self.allowed_bind_paths is not None
                or self.allowed_host_namespaces is not None
                or self.allowed_capabilities is not None
                or self.allowed_devices is not None
            )
        )

    def check_endpoint(self, method: str, path: str) -> Refusal | None:
        request = f"{method} {path}"
        for endpoint in self.denied_endpoints:
            if endpoint.matches(method, path):
                return Refusal("denied_endpoints", f"{request} matches {endpoint.text!r}")
        if self.allowed_endpoints is not None and not any(
            endpoint.matches(method, path) for endpoint in self.allowed_endpoints
        ):
            return Refusal("allowed_endpoints", f"{request} matches none of them")
        return None

    def check_body(self, route: str, body: Any) -> Refusal | None:
        """`route` is the endpoint the router resolved (see BODY_ROUTES)."""
        if not isinstance(body, _Object):
            # Anything else the daemon refuses (an array) or reads as empty (null).
            return None
        return next(_BODY_CHECKS[route](self, body), None)

    # --- a container's host config -------------------------------------------------------

    def _privileged(self, where: str, holder: _Object) -> Iterator[Refusal]:
        if not self.allow_privileged and True in _found(holder.fields("Privileged"), bool):
            yield Refusal("allow_privileged", f"{where}Privileged is true")

    def _binds(self, where: str, config: _Object) -> Iterator[Refusal]:
        if self.allowed_bind_paths is None:
            return
        for bind in _found(config.fields("Binds"), str):
            source = bind.split(":", 1)[0]
            # A source that is not a path is a named volume (or no volume: `/ctr` alone).
            if source.startswith("/") and ":" in bind:
                yield from self._host_path(f"{where}Binds {bind!r}", source)
        for mount in _found(config.fields("Mounts"), _Object):
            if "bind" in _lowered(mount.fields("Type")):
                for source in _found(mount.fields("Source"), str):
                    yield from self._host_path(f"{where}Mounts source {source!r}", source)
            for options in _found(mount.fields("VolumeOptions"), _Object):
                for driver in _found(options.fields("DriverConfig"), _Object):
                    yield from self._volume(f"{where}Mounts volume", driver, "Name", "Options")

    def _volume(
        self, where: str, spec: _Object, driver_key: str, options_key: str
    ) -> Iterator[Refusal]:
        """A local-driver volume whose `device` is a host path mounts that path."""
        if self.allowed_bind_paths is None:
            return
        drivers = _found(spec.fields(driver_key), str) or [""]
        if not any(driver in ("", "local") for driver in drivers):
            return
        for options in _found(spec.fields(options_key), _Object):
            # A Go map: its keys are matched exactly, unlike a struct's fields.
            types = _lowered(options.exact("type"))
            if types and all(t in _REMOTE_VOLUME_TYPES for t in types):
                continue
            for device in _found(options.exact("device"), str):
                if device.startswith("/"):
                    yield from self._host_path(f"{where} device {device!r}", device)

    def _host_path(self, where: str, source: str) -> Iterator[Refusal]:
        assert self.allowed_bind_paths is not None
        path = normal_path(source)
        if not _under(path, self.allowed_bind_paths):
            allowed = _listing(self.allowed_bind_paths, "no host path is allowed")
            yield Refusal("allowed_bind_paths", f"{where} mounts host path {path} ({allowed})")

    def _namespaces(self, where: str, config: _Object) -> Iterator[Refusal]:
        if self.allowed_host_namespaces is None:
            return
        for namespace, key in NAMESPACE_FIELDS.items():
            if namespace not in self.allowed_host_namespaces and "host" in _lowered(
                config.fields(key)
            ):
                allowed = _listing(sorted(self.allowed_host_namespaces), "none is allowed")
                yield Refusal(
                    "allowed_host_namespaces",
                    f'{where}{key} "host" shares the host\'s {namespace} namespace ({allowed})',
                )

    def _capabilities(self, where: str, config: _Object) -> Iterator[Refusal]:
        allowed = self.allowed_capabilities
        if allowed is None or "ALL" in allowed:
            return
        # `Capabilities` (API 1.40) replaces the default set: each one counts as added. Either
        # may be one string rather than a list (the daemon's StrSlice): _found takes both.
        for key in ("CapAdd", "Capabilities"):
            for capability in _found(config.fields(key), str):
                if capability_name(capability) not in allowed:
                    listing = _listing(sorted(allowed), "none is allowed")
                    yield Refusal(
                        "allowed_capabilities", f"{where}{key} adds {capability} ({listing})"
                    )

    def _devices(self, where: str, resources: _Object) -> Iterator[Refusal]:
        if self.allowed_devices is None:
            return
        allowed = _listing(self.allowed_devices, "no device is allowed")
        for device in _found(resources.fields("Devices"), _Object):
            for path in _found(device.fields("PathOnHost"), str):
                if not _under(normal_path(path), self.allowed_devices):
                    yield Refusal(
                        "allowed_devices", f"{where}Devices gives host device {path} ({allowed})"
                    )
        # These give devices by number or by driver, which a list of paths cannot judge.
        for key in ("DeviceCgroupRules", "DeviceRequests"):
            if any(value for value in resources.fields(key) if isinstance(value, list)):
                yield Refusal("allowed_devices", f"{where}{key} is set ({allowed})")

    def _container(self, body: _Object) -> Iterator[Refusal]:
        # Older daemons also read HostConfig's fields at the top level.
        holders = [
            ("", body),
            *(("HostConfig.", h) for h in _found(body.fields("HostConfig"), _Object)),
        ]
        for where, config in holders:
            yield from self._privileged(where, config)
            yield from self._binds(where, config)
            yield from self._namespaces(where, config)
            yield from self._capabilities(where, config)
            yield from self._devices(where, config)

    def _exec(self, body: _Object) -> Iterator[Refusal]:
        yield from self._privileged("", body)

    def _update(self, body: _Object) -> Iterator[Refusal]:
        yield from self._devices("", body)

    def _volume_create(self, body: _Object) -> Iterator[Refusal]:
        yield from self._volume("DriverOpts", body, "Driver", "DriverOpts")


_BODY_CHECKS = {
    "/containers/create": Rules._container,
    "/containers/{id}/exec": Rules._exec,
    "/containers/{id}/update": Rules._update,
    "/volumes/create": Rules._volume_create,
}
# The routes (without a version prefix) whose JSON body the rules look at, all POST: every
# other body (a build context, an image or archive upload) streams through unread.
BODY_ROUTES = frozenset(_BODY_CHECKS)


@dataclass(frozen=True)
class ClientRules:
    """The rule set of the clients whose certificate subject holds every attribute given."""

    subject: Subject
    rules: Rules

    def matches(self, subject: Subject) -> bool:
        return all(attribute in subject for attribute in self.subject)


@dataclass(frozen=True)
class Policy:
    rules: Rules = field(default_factory=Rules)
    clients: tuple[ClientRules, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.rules != Rules() or bool(self.clients)

    def rules_for(self, subject: Subject | None) -> tuple[Rules, str]:
        """The first client table that matches the subject, else everyone's rules; and
        whose they are ("" for everyone's)."""
        if subject:
            for client in self.clients:
                if client.matches(subject):
                    return client.rules, format_subject(client.subject)
        return self.rules, ""

    def needs_body(self, method: str, route: str, subject: Subject | None) -> bool:
        return self.rules_for(subject)[0].needs_body(method, route)

    def check(
        self,
        method: str,
        path: str,
        subject: Subject | None = None,
        *,
        route: str = "",
        body: bytes | None = None,
    ) -> Refusal | None:
        """None, or why the request is refused. `path` is the request's, `route` the
        endpoint the router resolved for it (both without a version prefix); `body` is
        given when `needs_body` said so."""
        rules, client = self.rules_for(subject)
        refusal = rules.check_endpoint(method, endpoint_path(path))
        if refusal is None and body is not None and rules.needs_body(method, route):
            try:
                parsed = parse_body(body)
            except ValueError as e:
                # Go's decoder would not have read it either (or nests deeper than Python
                # can follow): what cannot be checked is not let through.
                refusal = Refusal("", f"the request body cannot be checked: {e}")
            else:
                refusal = rules.check_body(route, parsed)
        return None if refusal is None else Refusal(refusal.rule, refusal.problem, client)


# --- request pieces -----------------------------------------------------------------------


def without_version(path: str) -> str:
    return _VERSION_PREFIX.sub("", path, count=1) if path.startswith("/v") else path


def endpoint_path(path: str) -> str:
    """The path endpoint rules see: no version prefix, no `//`, `.` or `..` segments."""
    return normal_path(without_version(path)) if path.startswith("/") else path


def normal_path(path: str) -> str:
    """An absolute path as the kernel resolves it, `..` included (`/data/../etc` is /etc);
    symbolic links on the node are not followed."""
    normal = posixpath.normpath("/" + path.lstrip("/"))
    return "/" + normal.lstrip("/")


def _under(path: str, prefixes: Sequence[str]) -> bool:
    return any(p == "/" or path == p or path.startswith(p + "/") for p in prefixes)


def capability_name(text: str) -> str:
    """`cap_sys_admin`, `CAP_SYS_ADMIN` and `SYS_ADMIN` are one capability, as the daemon
    reads them."""
    name = text.strip().upper()
    return name.removeprefix("CAP_")


def parse_body(body: bytes) -> Any:
    """The first JSON value of the body, its objects as `_Object`s. Raises ValueError."""
    text = body.decode("utf-8", "replace").lstrip(" \t\n\r")
    decoder = json.JSONDecoder(object_pairs_hook=_Object)
    try:
        return decoder.raw_decode(text)[0]
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON: {e}") from None
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


class _Object:
    """A JSON object with every key/value pair kept, duplicates included."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs

    def fields(self, name: str) -> list[Any]:
        """Every value that Go's decoder may take for the struct field `name`: keys match
        it case-insensitively, Unicode folds included (casefold folds at least as much)."""
        folded = name.casefold()
        return [value for key, value in self.pairs if key.casefold() == folded]

    def exact(self, key: str) -> list[Any]:
        """Every value of a Go map's key, which matches exactly."""
        return [value for k, value in self.pairs if k == key]


def _found(values: list[Any], kind: type[T]) -> list[T]:
    """The values of type `kind`, and those inside lists of them. A value of another type
    makes the daemon refuse the request, so it does not matter."""
    found: list[T] = []
    for value in values:
        items = value if isinstance(value, list) else [value]
        found.extend(item for item in items if isinstance(item, kind))
    return found


def _lowered(values: list[Any]) -> list[str]:
    return [value.lower() for value in values if isinstance(value, str)]


def _listing(items: Sequence[str], none: str) -> str:
    return f"allowed: {', '.join(items)}" if items else none


# --- client certificates ------------------------------------------------------------------


def subject_of_certificate(cert: Mapping[str, Any] | None) -> Subject | None:
    """The subject of a peer certificate as `ssl.SSLSocket.getpeercert()` gives it."""
    if not cert:
        return None
    return tuple((str(name), str(value)) for rdn in cert.get("subject", ()) for name, value in rdn)


def parse_subject(text: str) -> Subject:
    """`CN=ci-runner, O=acme` (a comma inside a value escaped `\\,`). Raises ValueError."""
    subject: list[tuple[str, str]] = []
    for part in re.split(r"(?<!\\),", text):
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip().replace("\\,", ",")
        if not sep or not name or not value:
            raise ValueError(f"{part.strip()!r} is not NAME=VALUE")
        long_name = _SUBJECT_NAMES.get(name.upper()) or _LONG_NAMES.get(name.lower())
        if long_name is None:
            known = ", ".join(sorted(n for n in _SUBJECT_NAMES if len(n) <= 3))
            raise ValueError(f"unknown attribute {name!r} (known: {known}, or their long names)")
        subject.append((long_name, value))
    return tuple(subject)


def format_subject(subject: Subject) -> str:
    return ",".join(
        f"{_SHORT_NAMES.get(name, name)}={value.replace(',', chr(92) + ',')}"
        for name, value in subject
    )


# --- the [policy] section -----------------------------------------------------------------

LIST_RULES = frozenset(
    {
        "allowed_bind_paths",
        "allowed_host_namespaces",
        "allowed_capabilities",
        "allowed_devices",
        "allowed_endpoints",
        "denied_endpoints",
    }
)
RULE_KEYS = frozenset(f.name for f in fields(Rules))
SECTION_KEYS = RULE_KEYS | {"clients"}
CLIENT_KEYS = RULE_KEYS | {"subject"}


def parse_policy(raw: Mapping[str, Any]) -> Policy:
    """The [policy] section (its rules, and `[[policy.clients]]`). Raises PolicyError."""
    unknown = sorted(set(raw) - SECTION_KEYS)
    if unknown:
        raise PolicyError(unknown[0], "unknown key")
    clients = raw.get("clients", [])
    if not isinstance(clients, list):
        raise PolicyError("clients", "must be an array of tables ([[policy.clients]])")
    rule_items = {k: v for k, v in raw.items() if k != "clients"}
    return Policy(
        rules=parse_rules(rule_items, ""),
        clients=tuple(_client(item, f"clients[{i}]") for i, item in enumerate(clients)),
    )


def _client(item: Any, key: str) -> ClientRules:
    if not isinstance(item, Mapping):
        raise PolicyError(key, "must be a table with a subject")
    unknown = sorted(set(item) - CLIENT_KEYS)
    if unknown:
        raise PolicyError(f"{key}.{unknown[0]}", "unknown key")
    text = item.get("subject")
    if not isinstance(text, str) or not text.strip():
        raise PolicyError(f"{key}.subject", 'is required: the certificate subject, "CN=name"')
    try:
        subject = parse_subject(text)
    except ValueError as e:
        raise PolicyError(f"{key}.subject", str(e)) from None
    rules = parse_rules({k: v for k, v in item.items() if k != "subject"}, f"{key}.")
    return ClientRules(subject, rules)


def parse_rules(raw: Mapping[str, Any], prefix: str) -> Rules:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = prefix + key
        if key == "allow_privileged":
            if not isinstance(value, bool):
                raise PolicyError(name, "must be true or false")
            values[key] = value
            continue
        items = _string_list(name, value)
        if key in ("allowed_bind_paths", "allowed_devices"):
            values[key] = tuple(_absolute(name, item) for item in items)
        elif key == "allowed_host_namespaces":
            bad = sorted(set(items) - set(NAMESPACE_FIELDS))
            if bad:
                raise PolicyError(
                    name, f"unknown namespace {bad[0]!r}: expected {', '.join(NAMESPACE_FIELDS)}"
                )
            values[key] = frozenset(items)
        elif key == "allowed_capabilities":
            names = [capability_name(item) for item in items]
            bad = [n for n in names if not _CAPABILITY.fullmatch(n)]
            if bad:
                raise PolicyError(name, f"{bad[0]!r} is not a capability name (NET_ADMIN)")
            values[key] = frozenset(names)
        else:
            values[key] = tuple(_endpoint(name, item) for item in items)
    return Rules(**values)


def _string_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(name, "must be a list of strings")
    return value


def _absolute(name: str, path: str) -> str:
    if not path.startswith("/"):
        raise PolicyError(name, f"{path!r} is not an absolute path")
    return normal_path(path)


def _endpoint(name: str, text: str) -> Endpoint:
    method, _, path = text.strip().partition(" ")
    method, path = method.upper(), path.strip()
    if method != "*" and method not in METHODS:
        raise PolicyError(
            name,
            f'{text!r}: expected "METHOD PATH", METHOD one of * or {", ".join(sorted(METHODS))}',
        )
    if not (path == "*" or path.startswith("/")):
        raise PolicyError(name, f'{text!r}: expected "METHOD PATH", PATH * or /a/path/glob')
    return Endpoint(text.strip(), method, path)


def env_flag(text: str) -> Any:
    """allow_privileged as SWARMPROXY_POLICY_ALLOW_PRIVILEGED gives it: true/false or 1/0
    (anything else is left for parse_rules to refuse)."""
    return {"true": True, "1": True, "false": False, "0": False}.get(text.strip().lower(), text)
