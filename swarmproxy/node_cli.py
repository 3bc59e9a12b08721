"""`swarmproxy node …`: the cluster's nodes, through the admin API of a running proxy."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swarmproxy import config
from swarmproxy.admin_client import DEFAULT_ADMIN, AdminClient, AdminError
from swarmproxy.cluster.node import CREATED, CREATION_STATUSES, DISABLED
from swarmproxy.config import ADMIN_VARIABLE, ConfigError

NODES = "/swarmproxy/v1/nodes"
COLUMNS = ("NAME", "ADDRESS", "STATUS", "CONTAINERS", "LAST SUCCESS", "LAST ERROR", "LABELS")


def add_admin_options(parser: argparse.ArgumentParser) -> None:
    """Where a command finds the running proxy's admin API."""
    parser.add_argument(
        "--admin",
        default=os.environ.get(ADMIN_VARIABLE, DEFAULT_ADMIN),
        type=_admin_address,
        metavar="ADDR",
        help=f"the proxy's admin listener, tcp://HOST:PORT or unix:///PATH "
        f"(default ${ADMIN_VARIABLE} or {DEFAULT_ADMIN})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("SWARMPROXY_ADMIN_TOKEN", ""),
        help="the admin API's bearer token (default $SWARMPROXY_ADMIN_TOKEN)",
    )


def _admin_address(address: str) -> str:
    """An address as [admin] listen takes it: a bad one is a usage error (exit 2)."""
    try:
        config.from_dict({"admin": {"listen": [address]}})
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("admin.listen: ")) from None
    return address


def add_format_option(parser: argparse.ArgumentParser) -> None:
    """--format for the commands that show what the admin API answered."""
    parser.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="a table to read (the default), or the admin API's JSON answer for scripts",
    )
    parser.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as --format json"
    )


def add_parser(commands: Any) -> None:
    node = commands.add_parser("node", help="list and manage the nodes of a running proxy")
    add_admin_options(node)
    actions = node.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("ls", help="every node with its status, drained ones included")
    ls.add_argument(
        "--label", action="append", default=[], metavar="K=V", help="only nodes with this label"
    )
    add_format_option(ls)
    add = actions.add_parser("add", help="register a node")
    add.add_argument("address", help="tcp://HOST:PORT or unix:///PATH")
    add.add_argument("--name", default="", help="its name (default: from the address)")
    add.add_argument(
        "--label", action="append", default=[], metavar="K=V", help="a label; repeat for several"
    )
    add.add_argument(
        "--creation-status",
        choices=CREATION_STATUSES,
        default=CREATED,
        help="only `created` nodes take new containers (default created)",
    )
    for item, what in (
        ("ca", "the CA that signed the node's certificate"),
        ("cert", "the proxy's client certificate for the node"),
        ("key", "the key of that certificate"),
    ):
        add.add_argument(f"--tls-{item}", metavar="FILE", help=f"{what} (PEM, read here)")
    rm = actions.add_parser("rm", help="unregister nodes")
    rm.add_argument("nodes", nargs="+", metavar="NODE", help="name or address")
    update = actions.add_parser("update", help="set or drop labels, in one atomic change")
    update.add_argument("node", metavar="NODE", help="name or address")
    update.add_argument("--label", action="append", default=[], metavar="K=V", help="set")
    update.add_argument("--label-rm", action="append", default=[], metavar="K", help="drop")
    update.add_argument(
        "--creation-status",
        choices=CREATION_STATUSES,
        help="only `created` nodes take new containers",
    )
    for action, what in (("drain", "take no new containers"), ("enable", "take them again")):
        actions.add_parser(action, help=what).add_argument(
            "node", metavar="NODE", help="name or address"
        )


def _labels(pairs: Sequence[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise AdminError(f"label {pair!r} is not K=V")
        labels[key] = value
    return labels


def _pems(args: argparse.Namespace) -> dict[str, str]:
    """The TLS files, read on this host and sent as text: the proxy (and every replica of
    it) may run elsewhere."""
    pems = {}
    for item in ("ca", "cert", "key"):
        path = getattr(args, f"tls_{item}")
        if path:
            try:
                pems[f"tls_{item}_pem"] = Path(path).read_text()
            except (OSError, UnicodeDecodeError) as e:
                raise AdminError(f"--tls-{item} {path}: {e}") from None
    return pems


def _creation(status: str) -> str:
    """How a node's creation status shows beside its health, when it is not `created`."""
    if status == CREATED:
        return ""
    return ", drained" if status == DISABLED else f", {status}"


def nodes_table(nodes: list[dict[str, Any]]) -> str:
    """Nodes as the admin API shows them, one line each."""
    rows = [
        (
            n["Name"],
            n["Address"],
            n["Status"] + _creation(n["CreationStatus"]),
            str(n["Containers"]),
            n["LastSuccessAt"] or "-",
            n["LastError"] or "-",
            ",".join(f"{k}={v}" for k, v in sorted(n["Labels"].items())) or "-",
        )
        for n in nodes
    ]
    return table(COLUMNS, rows)


def table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows under their column names, each column as wide as its widest cell."""
    lines = [tuple(columns), *(tuple(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _call(client: AdminClient, args: argparse.Namespace) -> Any:
    node = f"{NODES}/{getattr(args, 'node', '')}"
    if args.action == "ls":
        query = "&".join(["all=1", *(f"label={label}" for label in args.label)])
        return client.call("GET", f"{NODES}?{query}")
    if args.action == "add":
        body = {"address": args.address, "name": args.name, "labels": _labels(args.label)}
        body.update(_pems(args), creation_status=args.creation_status)
        return client.call("POST", NODES, body)
    if args.action == "rm":
        return client.call("POST", f"{NODES}/unregister", {"nodes": args.nodes})
    if args.action == "update":
        labels: dict[str, str | None] = {**_labels(args.label)}
        labels.update(dict.fromkeys(args.label_rm))
        change: dict[str, Any] = {"labels": labels}
        if args.creation_status:
            change["creation_status"] = args.creation_status
        return client.call("PATCH", node, change)
    return client.call("POST", f"{node}/{args.action}")


def run(args: argparse.Namespace) -> int:
    try:
        answer = _call(AdminClient(args.admin, args.token), args)
    except AdminError as e:
        print(f"swarmproxy: {e}", file=sys.stderr)
        return 1
    if args.action == "ls":
        print(json.dumps(answer, indent=2) if args.format == "json" else nodes_table(answer))
    elif isinstance(answer, dict):
        print(nodes_table([answer]))
    return 0
