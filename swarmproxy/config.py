"""Configuration: a TOML file, overridden by SWARMPROXY_<SECTION>_<KEY> variables, then flags.

A table inside a section is SWARMPROXY_<SECTION>_<TABLE>_<KEY>: SWARMPROXY_SERVER_TLS_CERT is
`cert` in [server.tls]. Every error names the key it is about, so `swarmproxy` can report it
on one line.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarmproxy import policy as policy_module
from swarmproxy.policy import Policy, PolicyError
from swarmproxy.tls import (
    NODE_SETTINGS,
    SERVER_SETTINGS,
    NodeTLS,
    ServerTLS,
    TLSError,
    node_tls,
    server_tls,
)

ENV_PREFIX = "SWARMPROXY_"
# Where the commands that talk to a running proxy (`node`, `schedule`, `status`) find its
# admin API: theirs, not a setting of `serve`, which must start with it exported.
ADMIN_VARIABLE = "SWARMPROXY_ADMIN"
DEFAULT_LISTEN = "tcp://127.0.0.1:2375"


class ConfigError(Exception):
    """A bad configuration; the message starts with the offending key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


@dataclass
class NodeConfig:
    address: str
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    # Only for tcp:// nodes; None is plain HTTP.
    tls: NodeTLS | None = None


@dataclass
class ServerConfig:
    listen: list[str] = field(default_factory=lambda: [DEFAULT_LISTEN])
    # The name `docker info` shows for the whole cluster.
    name: str = field(default_factory=socket.gethostname)
    # [server.tls]: applies to every tcp:// listener; unix sockets stay plain.
    tls: ServerTLS | None = None
    # Bytes of a JSON body the proxy reads whole itself (container, exec, volume and network
    # create, commit, connect): a larger one is answered 413. Streamed bodies (image load
    # and import, build contexts, archives) are not bounded by it.
    max_json_body: int = 16 * 1024 * 1024
    # Bytes of the request line and of one header: a longer one is answered 400. The
    # docker CLI's X-Registry-Config (build) holds every registry login, base64-encoded.
    max_line_size: int = 64 * 1024
    max_field_size: int = 256 * 1024
    # Seconds a client has to send a request head: from the connection's start, or from
    # the first byte of a later request on it. Then the connection is closed.
    head_timeout: float = 60.0
    # Seconds a kept-alive connection may wait for its next request. Longer than Go's
    # default for idle client connections (90 s), so that clients usually close first.
    idle_timeout: float = 120.0
    # Seconds requests and streams under way (logs -f, attach, events) may go on after a
    # SIGTERM, with no new connection taken; then they are cut and the proxy exits.
    shutdown_timeout: float = 10.0
    # Processes serving the same listeners (tcp:// ones through SO_REUSEPORT): one process
    # runs on one core. More than one needs storage they share (Redis), as replicas do.
    workers: int = 1


@dataclass
class AdminConfig:
    # Where the admin API (nodes, drain, labels) is served; none by default: it is
    # privileged, so it is asked for (tcp://127.0.0.1:2376, or a unix socket).
    listen: list[str] = field(default_factory=list)
    # When set, every admin request must carry `Authorization: Bearer <token>`.
    token: str = ""


@dataclass
class StorageConfig:
    url: str = "memory://"
    prefix: str = "swarmproxy:"
    # Seconds between two reconciliations of the index with what the nodes hold.
    reconcile_interval: float = 60.0


@dataclass
class SchedulerConfig:
    # round-robin, spread, binpack, random, or a custom one: "package.module:Class".
    strategy: str = "round-robin"
    # Nodes a create is tried on when nodes fail it (a daemon's refusal is final).
    max_attempts: int = 3
    # Seconds a node stays down before its containers that ask for it (`-e
    # reschedule:on-node-failure`) are made again on another node.
    reschedule_grace: float = 60.0
    # Classic Swarm's filters, in the order they judge the nodes; `health` is required.
    filters: list[str] = field(
        default_factory=lambda: ["health", "constraint", "affinity", "port", "dependency"]
    )


@dataclass
class HealthConfig:
    # Seconds between pings of every node.
    interval: float = 5.0
    # Seconds a node may take to answer a health ping.
    timeout: float = 3.0
    # Seconds a call to every node (listing, prune, info, a lookup miss, opening events)
    # waits for one node before leaving it out: one stuck node must not hang them all.
    node_timeout: float = 10.0
    # Seconds after which a name reserved by a create that never answered (its proxy
    # died) is checked against the nodes and freed if no node made the container.
    pending_name_timeout: float = 300.0
    # The healer that decides how long a failing node is disabled: "package.module:Class";
    # empty for the default back-off (5 s doubling to 5 minutes).
    healer: str = ""


@dataclass
class ImagesConfig:
    # Seconds a pull, an import or a load may go without a word from a node before it is
    # given up on that node: a registry that accepts and never answers must not hang it.
    pull_inactivity_timeout: float = 120.0


@dataclass
class HooksConfig:
    # Import paths ("package.module:function") of the functions run before each event.
    before_container_create: list[str] = field(default_factory=list)
    before_node_register: list[str] = field(default_factory=list)
    before_node_unregister: list[str] = field(default_factory=list)


@dataclass
class LogConfig:
    level: str = "info"
    format: str = "text"


@dataclass
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    hooks: HooksConfig = field(default_factory=HooksConfig)
    log: LogConfig = field(default_factory=LogConfig)
    nodes: list[NodeConfig] = field(default_factory=list)
    # [policy]: the authorization rules (swarmproxy.policy); none by default.
    policy: Policy = field(default_factory=Policy)


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "admin": AdminConfig,
    "storage": StorageConfig,
    "scheduler": SchedulerConfig,
    "health": HealthConfig,
    "images": ImagesConfig,
    "hooks": HooksConfig,
    "log": LogConfig,
}
_LIST_KEYS = {("server", "listen"), ("admin", "listen")}
# Lists of names, checked when the cluster is made from the config.
_NAME_LIST_KEYS = {("scheduler", "filters")}
# Lists of import paths ("package.module:name"), checked when the cluster loads them.
_PATH_LIST_KEYS = {("hooks", key) for key in HooksConfig.__dataclass_fields__}
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
# Lists that may be empty: no admin listener unless one is asked for.
_MAY_BE_EMPTY = {("admin", "listen")}
_FLOAT_KEYS = {
    ("server", "head_timeout"),
    ("server", "idle_timeout"),
    ("server", "shutdown_timeout"),
    ("storage", "reconcile_interval"),
    ("scheduler", "reschedule_grace"),
    ("health", "node_timeout"),
    ("health", "interval"),
    ("health", "timeout"),
    ("health", "pending_name_timeout"),
    ("images", "pull_inactivity_timeout"),
}
# Whole numbers of at least one.
_COUNT_KEYS = {
    ("scheduler", "max_attempts"),
    ("server", "workers"),
    ("server", "max_json_body"),
    ("server", "max_line_size"),
    ("server", "max_field_size"),
}
_CHOICES = {
    ("log", "level"): {"debug", "info", "warning", "error"},
    ("log", "format"): {"text", "json"},
}
# A host name, an IPv4 address or a bracketed IPv6 address, and a port; or a socket path.
_ADDRESS = re.compile(r"tcp://([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5}|unix:///[^\x00\n]+")
_NODE_KEYS = {"address", "name", "labels", *NODE_SETTINGS}
# Tables inside a section, and their keys (set from the environment one key at a time).
_TABLES = {("server", "tls"): SERVER_SETTINGS}


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read `path` (if any), apply the environment, validate."""
    return from_dict(read(path, env))


def read(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings of `path` (if any) with the environment's over them, not yet validated."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except OSError as e:
            raise ConfigError(str(path), f"cannot read the config file: {e.strerror}") from e
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(str(path), f"invalid TOML: {e}") from e
    _apply_env(raw, os.environ if env is None else env)
    return raw


def from_dict(raw: Mapping[str, Any]) -> Config:
    config, problems = check(raw)
    if problems:
        raise problems[0]
    return config


def check(raw: Mapping[str, Any]) -> tuple[Config, list[ConfigError]]:
    """The config `raw` describes, and every problem in it, in the order `from_dict` meets
    them. A bad key keeps its default; how keys combine is checked once each key is valid,
    so that one mistake is not reported again as the clashes it causes."""
    config = Config()
    problems: list[ConfigError] = []
    for section, value in raw.items():
        try:
            _section(config, section, value, problems)
        except ConfigError as e:
            problems.append(e)
    if not problems:
        try:
            _check_combinations(config)
        except ConfigError as e:
            problems.append(e)
    return config, problems


def _section(config: Config, section: str, value: Any, problems: list[ConfigError]) -> None:
    if section == "nodes":
        config.nodes = _nodes(value, problems)
        return
    if section == "policy":
        config.policy = _policy(value)
        return
    cls = _SECTIONS.get(section)
    if cls is None:
        raise ConfigError(section, "unknown section")
    if not isinstance(value, Mapping):
        raise ConfigError(section, "must be a table")
    target = getattr(config, section)
    for key, item in value.items():
        try:
            if key not in cls.__dataclass_fields__:
                raise ConfigError(f"{section}.{key}", "unknown key")
            setattr(target, key, _value(section, key, item))
        except ConfigError as e:
            problems.append(e)


def _check_combinations(config: Config) -> None:
    _check_unique_nodes(config.nodes)
    if config.policy.clients and (config.server.tls is None or not config.server.tls.client_ca):
        # Without client certificates no client has a subject: the tables would never apply.
        raise ConfigError("policy.clients", "needs [server.tls] client_ca")
    if config.server.workers > 1 and config.storage.url.startswith("memory:"):
        # Each worker would keep an index of its own: names, rotation and routes would
        # differ from one request to the next.
        raise ConfigError("server.workers", "more than 1 needs shared storage (a Redis url)")


def parse_node(spec: str, key: str = "nodes") -> NodeConfig:
    """A node given on the command line or in SWARMPROXY_NODES: `ADDRESS` or `NAME=ADDRESS`."""
    name, sep, address = spec.partition("=")
    if not sep or "://" in name:
        name, address = "", spec
    return _node({"address": address, "name": name}, key)


def node_from_table(item: Any, key: str) -> NodeConfig:
    """A node as a `[[nodes]]` table gives it (the admin API takes the same keys)."""
    return _node(item, key)


def default_node_name(address: str) -> str:
    # The socket's path: sockets are often all called docker.sock, in different folders.
    return address.removeprefix("unix://").removeprefix("tcp://")


def _value(section: str, key: str, value: Any) -> Any:
    name = f"{section}.{key}"
    if (section, key) == ("server", "tls"):
        return _listener_tls(value)
    if (section, key) in _LIST_KEYS:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(name, "must be a list of addresses")
        if not value and (section, key) not in _MAY_BE_EMPTY:
            raise ConfigError(name, "needs at least one address")
        for address in value:
            _check_address(name, address)
        return value
    if (section, key) in _NAME_LIST_KEYS:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(name, "must be a list of names")
        return value
    if (section, key) in _PATH_LIST_KEYS:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(
            isinstance(v, str) and _IMPORT_PATH.fullmatch(v) for v in value
        ):
            raise ConfigError(name, 'must be a list of "package.module:function"')
        return value
    if (section, key) in _FLOAT_KEYS:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ConfigError(name, "must be a positive number of seconds")
        return float(value)
    if (section, key) in _COUNT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(name, "must be a whole number, at least 1")
        return value
    if not isinstance(value, str):
        raise ConfigError(name, "must be a string")
    choices = _CHOICES.get((section, key))
    if choices is not None and value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(sorted(choices))}")
    return value


def _nodes(value: Any, problems: list[ConfigError]) -> list[NodeConfig]:
    if not isinstance(value, list):
        raise ConfigError("nodes", "must be an array of tables ([[nodes]])")
    nodes = []
    for i, item in enumerate(value):
        try:
            nodes.append(_node(item, f"nodes[{i}]"))
        except ConfigError as e:
            problems.append(e)
    return nodes


def _node(item: Any, key: str) -> NodeConfig:
    if not isinstance(item, Mapping):
        raise ConfigError(key, "must be a table with an address")
    unknown = set(item) - _NODE_KEYS
    if unknown:
        raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown key")
    address = item.get("address")
    if not isinstance(address, str):
        raise ConfigError(f"{key}.address", "is required and must be a string")
    _check_address(f"{key}.address", address)
    name = item.get("name")
    if name is None or name == "":
        name = default_node_name(address)
    if not isinstance(name, str):
        raise ConfigError(f"{key}.name", "must be a string")
    labels = item.get("labels", {})
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ConfigError(f"{key}.labels", "must be a table of strings")
    return NodeConfig(address=address, name=name, labels=dict(labels), tls=_tls_of_node(item, key))


def _tls_of_node(item: Mapping[str, Any], key: str) -> NodeTLS | None:
    settings = {k: v for k, v in item.items() if k in NODE_SETTINGS}
    address = item["address"]
    if settings and address.startswith("unix://"):
        raise ConfigError(
            f"{key}.{next(iter(settings))}", f"TLS is for tcp:// nodes, not {address}"
        )
    try:
        return node_tls(settings)
    except TLSError as e:
        raise ConfigError(f"{key}.{e.setting}", e.problem) from e


def _policy(value: Any) -> Policy:
    if not isinstance(value, Mapping):
        raise ConfigError("policy", "must be a table")
    try:
        return policy_module.parse_policy(value)
    except PolicyError as e:
        raise ConfigError(f"policy.{e.setting}", e.problem) from e


def _listener_tls(value: Any) -> ServerTLS:
    if not isinstance(value, Mapping):
        raise ConfigError("server.tls", "must be a table with cert and key")
    try:
        return server_tls(value)
    except TLSError as e:
        raise ConfigError(f"server.tls.{e.setting}", e.problem) from e


def _check_address(key: str, address: str) -> None:
    if not _ADDRESS.fullmatch(address):
        raise ConfigError(key, f"{address!r} is not tcp://HOST:PORT or unix:///PATH")
    if address.startswith("tcp://") and not 0 < int(address.rpartition(":")[2]) < 65536:
        raise ConfigError(key, f"{address!r} has a port outside 1-65535")


def _check_unique_nodes(nodes: list[NodeConfig]) -> None:
    seen_addresses: set[str] = set()
    seen_names: set[str] = set()
    for i, node in enumerate(nodes):
        if node.address in seen_addresses:
            raise ConfigError(f"nodes[{i}].address", f"{node.address} is listed twice")
        if node.name in seen_names:
            raise ConfigError(f"nodes[{i}].name", f"{node.name} is used twice")
        seen_addresses.add(node.address)
        seen_names.add(node.name)


def is_setting(var: str) -> bool:
    """Whether an environment variable is read as a setting."""
    return var.startswith(ENV_PREFIX) and var != ADMIN_VARIABLE


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    for var, text in env.items():
        if not is_setting(var):
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        if rest == "nodes":
            raw["nodes"] = [
                {"address": n.address, "name": n.name}
                for n in (parse_node(s.strip(), var) for s in text.split(",") if s.strip())
            ]
            continue
        section, _, key = rest.partition("_")
        if section == "policy" and key in policy_module.RULE_KEYS:
            _table(raw, section, section)[key] = (
                _env_list(text) if key in policy_module.LIST_RULES else policy_module.env_flag(text)
            )
            continue
        inner, _, inner_key = key.partition("_")
        if inner_key in _TABLES.get((section, inner), ()):
            _table(_table(raw, section, section), inner, f"{section}.{inner}")[inner_key] = text
            continue
        if (
            section not in _SECTIONS
            or key not in _SECTIONS[section].__dataclass_fields__
            or (section, key) in _TABLES
        ):
            raise ConfigError(var, "unknown setting")
        _table(raw, section, section)[key] = _env_value(section, key, text)


def _env_list(text: str) -> Any:
    """A JSON array, or comma-separated values."""
    if text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return [part.strip() for part in text.split(",") if part.strip()]


def _table(parent: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    table = parent.setdefault(key, {})
    if not isinstance(table, dict):
        raise ConfigError(name, "must be a table")
    return table


def _env_value(section: str, key: str, text: str) -> Any:
    if (section, key) in _LIST_KEYS | _PATH_LIST_KEYS | _NAME_LIST_KEYS:
        return _env_list(text)
    if (section, key) in _FLOAT_KEYS | _COUNT_KEYS:
        try:
            return float(text) if (section, key) in _FLOAT_KEYS else int(text)
        except ValueError:
            return text
    return text
