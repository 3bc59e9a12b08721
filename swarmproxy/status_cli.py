"""`swarmproxy status`: whether a running proxy is ready, its storage and every node, from the
admin API's health endpoint."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from swarmproxy.admin_client import AdminClient, AdminError, refusal
from swarmproxy.node_cli import add_admin_options, add_format_option, nodes_table

HEALTH = "/swarmproxy/v1/health"


def add_parser(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="whether a running proxy is ready: its storage and every node",
        description="Ask a running proxy's admin API for its health: ready when its storage\n"
        "answers and a node takes containers. Exits 0 when it is ready, 1 when it is not\n"
        "or cannot be reached. Without the admin token, only the verdict is given.",
    )
    add_admin_options(status)
    add_format_option(status)


def run(args: argparse.Namespace) -> int:
    try:
        code, answer = AdminClient(args.admin, args.token).request("GET", HEALTH)
        # 503 is the verdict "unready", with the same body; anything else is no verdict.
        if code not in (200, 503) or not isinstance(answer, dict) or "Status" not in answer:
            raise refusal(code, answer)
    except AdminError as e:
        print(f"swarmproxy: {e}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(answer, indent=2))
    else:
        print(_report(answer))
        if "Nodes" not in answer:
            print(
                "swarmproxy: the nodes are shown with the admin token "
                "(--token or $SWARMPROXY_ADMIN_TOKEN)",
                file=sys.stderr,
            )
    return 0 if code == 200 else 1


def _report(health: dict[str, Any]) -> str:
    storage = health["Storage"]
    if storage["Available"]:
        storage_line = "available"
    else:
        since = f" since {storage['Since']}" if storage["Since"] else ""
        error = f": {storage['Error']}" if storage["Error"] else ""
        storage_line = f"unavailable{since}{error}"
    nodes = health.get("Nodes")
    taking = f"{health['ReadyNodes']}" + (f" of {len(nodes)}" if nodes is not None else "")
    lines = [
        f"proxy:    {health['Status']}",
        f"storage:  {storage_line}",
        f"nodes:    {taking} taking containers",
    ]
    if nodes:
        lines += ["", nodes_table(nodes)]
    return "\n".join(lines)
