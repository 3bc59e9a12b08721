"""The `swarmproxy` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from swarmproxy import __version__, log, node_cli, schedule_cli
from swarmproxy import config as config_module
from swarmproxy.admin_client import DEFAULT_ADMIN
from swarmproxy.config import Config, ConfigError

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarmproxy",
        description="One Docker Engine API in front of many Docker daemons.",
    )
    parser.add_argument("--version", action="version", version=f"swarmproxy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the Docker API for the configured nodes")
    serve.add_argument("--config", "-c", metavar="PATH", help="TOML config file")
    serve.add_argument(
        "--listen",
        "-l",
        action="append",
        metavar="ADDR",
        help="tcp://HOST:PORT or unix:///PATH to listen on; repeat for several; "
        "replaces the config's server.listen",
    )
    serve.add_argument(
        "--node",
        "-n",
        action="append",
        metavar="[NAME=]ADDR",
        help="a node (tcp://HOST:PORT or unix:///PATH); repeat for several; "
        "replaces the config's nodes unless --add-nodes",
    )
    serve.add_argument(
        "--add-nodes",
        action="store_true",
        help="add the --node flags to the config's nodes instead of replacing them",
    )

    node_cli.add_parser(commands)
    schedule_cli.add_parser(commands)

    dev = commands.add_parser(
        "dev-cluster",
        help="start local dockerd nodes and serve them (needs root and dockerd)",
    )
    dev.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    dev.add_argument("--listen", default=config_module.DEFAULT_LISTEN, metavar="ADDR")
    dev.add_argument("--storage", default="memory://", metavar="URL")
    dev.add_argument(
        "--admin",
        default=DEFAULT_ADMIN,
        metavar="ADDR",
        help=f"the admin API's listener, for `swarmproxy node` (default {DEFAULT_ADMIN}; "
        '"" for none)',
    )
    dev.add_argument("--workdir", metavar="DIR", help="where the nodes keep their data")
    return parser


def build_config(args: argparse.Namespace) -> Config:
    config = config_module.load(args.config)
    if args.listen:
        for address in args.listen:
            config_module.from_dict({"server": {"listen": [address]}})  # validates it
        config.server.listen = list(args.listen)
    if args.node:
        nodes = [config_module.parse_node(spec, "--node") for spec in args.node]
        config.nodes = (config.nodes + nodes) if args.add_nodes else nodes
        config_module.from_dict(
            {"nodes": [{"address": n.address, "name": n.name} for n in config.nodes]}
        )
    from swarmproxy.scheduler import make_scheduler
    from swarmproxy.scheduler.filters import make_filters

    try:
        make_scheduler(config.scheduler.strategy)
    except ValueError as e:
        raise ConfigError("scheduler.strategy", str(e)) from None
    try:
        make_filters(config.scheduler.filters)
    except ValueError as e:
        raise ConfigError("scheduler.filters", str(e)) from None
    if "health" not in config.scheduler.filters:
        # Scheduling must never pick a node that is down or drained.
        raise ConfigError("scheduler.filters", "must include health")
    from swarmproxy.cluster.healer import load_healer
    from swarmproxy.cluster.hooks import EVENTS, load_hook

    try:
        load_healer(config.health.healer)
    except ValueError as e:
        raise ConfigError("health.healer", str(e)) from None
    for event in EVENTS:
        for spec in getattr(config.hooks, event):
            try:
                load_hook(spec)
            except ValueError as e:
                raise ConfigError(f"hooks.{event}", str(e)) from None
    if not config.nodes:
        raise ConfigError("nodes", "no node given: add [[nodes]] to the config or --node")
    return config


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop, the event loop swarmproxy is built for."""
    import uvloop

    uvloop.run(coroutine)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        try:
            config = build_config(args)
        except ConfigError as e:
            print(f"swarmproxy: config error: {e}", file=sys.stderr)
            return EXIT_CONFIG
        log.setup(config.log.level, config.log.format)
        from swarmproxy.api.app import serve

        def reload() -> Config:
            # SIGHUP reads the file again, with the same flags over it.
            return build_config(args)

        if config.server.workers == 1:
            run(serve(config, reload=reload))
            return 0
        from swarmproxy.workers import supervise

        unix = [a for a in config.server.listen + config.admin.listen if a.startswith("unix://")]
        return supervise(
            config.server.workers,
            unix,
            lambda workers: run(serve(config, reload=reload, workers=workers)),
        )
    if args.command == "node":
        return node_cli.run(args)
    if args.command == "schedule":
        return schedule_cli.run(args)
    if args.command == "dev-cluster":
        from swarmproxy.devcluster import run_dev_cluster

        status: int = run_dev_cluster(
            args.nodes, args.listen, args.storage, args.workdir, args.admin
        )
        return status
    return 1
