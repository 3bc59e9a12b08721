"""`swarmproxy schedule`: where a container would go, and why, asked of a running proxy's
placement dry-run. Nothing is created. Takes the `docker run` options that placement
reads."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from swarmproxy.admin_client import AdminClient, AdminError
from swarmproxy.node_cli import add_admin_options, add_format_option, table

SCHEDULE = "/swarmproxy/v1/schedule"
COLUMNS = ("NODE", "RESULT", "SCORE", "WHY")
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_PUBLISH = re.compile(r"^(?:(?P<ip>[^:]*):)?(?P<host>\d*):(?P<port>\d+)(?:/(?P<proto>\w+))?$")


def add_parser(commands: Any) -> None:
    schedule = commands.add_parser(
        "schedule", help="where a container would go, and why (nothing is created)"
    )
    add_admin_options(schedule)
    schedule.add_argument("--image", required=True, help="the container's image")
    schedule.add_argument("--name", default="", help="the container's name")
    schedule.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="environment, constraint:EXPR and affinity:EXPR included; repeat for several",
    )
    schedule.add_argument(
        "-l", "--label", action="append", default=[], metavar="K=V", help="a container label"
    )
    schedule.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="[IP:]HOST:PORT",
        help="a published port (the port filter)",
    )
    schedule.add_argument(
        "-v", "--volume", action="append", default=[], metavar="NAME:PATH", help="a volume"
    )
    schedule.add_argument(
        "--volumes-from",
        action="append",
        default=[],
        metavar="CONTAINER",
        help="a container whose volumes it mounts",
    )
    schedule.add_argument(
        "--link", action="append", default=[], metavar="NAME:ALIAS", help="a linked container"
    )
    schedule.add_argument(
        "--network", default="", metavar="MODE", help="network mode, e.g. container:NAME"
    )
    schedule.add_argument("--cpus", type=float, default=0.0, help="CPUs it reserves")
    schedule.add_argument("-m", "--memory", default="", metavar="BYTES", help="e.g. 512m")
    schedule.add_argument(
        "--node", action="append", default=[], help="only these nodes; repeat for several"
    )
    add_format_option(schedule)


def create_body(args: argparse.Namespace) -> dict[str, Any]:
    """The Engine API create body `docker run` would send with these options."""
    host: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in args.publish:
        match = _PUBLISH.match(spec)
        if match is None:
            raise AdminError(f"invalid --publish {spec!r}: expected [IP:]HOST:PORT[/PROTO]")
        port = f"{match['port']}/{match['proto'] or 'tcp'}"
        bindings.setdefault(port, []).append(
            {"HostIp": match["ip"] or "", "HostPort": match["host"]}
        )
    if bindings:
        host["PortBindings"] = bindings
    for key, values in (("Binds", args.volume), ("VolumesFrom", args.volumes_from)):
        if values:
            host[key] = list(values)
    if args.link:
        host["Links"] = list(args.link)
    if args.network:
        host["NetworkMode"] = args.network
    if args.cpus:
        host["NanoCpus"] = int(args.cpus * 1e9)
    if args.memory:
        host["Memory"] = _bytes(args.memory)
    labels = dict(label.partition("=")[::2] for label in args.label)
    return {"Image": args.image, "Env": list(args.env), "Labels": labels, "HostConfig": host}


def _bytes(text: str) -> int:
    match = re.fullmatch(r"(\d+)([bkmg]?)", text.strip().lower())
    if match is None:
        raise AdminError(f"invalid --memory {text!r}: expected a number with b, k, m or g")
    return int(match[1]) * _UNITS[match[2]]


def _rows(answer: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    chosen = (answer.get("Node") or {}).get("Name")
    rows = []
    for node in answer["Nodes"]:
        if node["Name"] == chosen:
            result = "chosen"
        elif node["ExcludedBy"]:
            result = f"excluded by {node['ExcludedBy']}"
        else:
            result = "passed" if node["Preferred"] else "passed, not preferred"
        score = "-" if node["Score"] is None else f"{node['Score']:g}"
        rows.append((node["Name"], result, score, node["Reason"] or "-"))
    return rows


def run(args: argparse.Namespace) -> int:
    query = "&".join(
        [*(f"node={n}" for n in args.node), *([f"name={args.name}"] * bool(args.name))]
    )
    try:
        answer = AdminClient(args.admin, args.token).call(
            "POST", f"{SCHEDULE}?{query}" if query else SCHEDULE, create_body(args)
        )
    except AdminError as e:
        print(f"swarmproxy: {e}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(answer, indent=2))
        return 0
    print(table(COLUMNS, _rows(answer)))
    chosen = answer.get("Node")
    print(
        f"strategy {answer['Strategy']}: " + (chosen["Name"] if chosen else "no node can take it")
    )
    return 0 if chosen else 1
