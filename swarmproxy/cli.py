"""The `swarmproxy` command."""

from __future__ import annotations

import argparse
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from swarmproxy import __version__, config_cli, log, node_cli, schedule_cli, status_cli
from swarmproxy import config as config_module
from swarmproxy.admin_client import DEFAULT_ADMIN
from swarmproxy.config import Config, ConfigError
from swarmproxy.config_cli import EXIT_CONFIG, build_config

if TYPE_CHECKING:
    from swarmproxy.workers import Workers

EXIT_STATUS = f"""exit status:
  0  done; `status`: the proxy is ready; `config check`: the config is valid
  1  an error: the admin API refused a call or could not be reached, the proxy is
     not ready (`status`), no node can take the container (`schedule`)
  {EXIT_CONFIG}  a usage error, or a config that is not valid"""


class _Parser(argparse.ArgumentParser):
    """Every command's help ends with the exit statuses; subcommands are made of this class
    too, so `swarmproxy node ls -h` shows them as `swarmproxy -h` does."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", EXIT_STATUS)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)


def _count(text: str) -> int:
    count = int(text) if text.isdigit() else 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return count


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="swarmproxy",
        description="One Docker Engine API in front of many Docker daemons.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"swarmproxy {__version__}",
        help="print the version and exit",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the Docker API for the configured nodes")
    config_cli.add_config_options(serve)
    config_cli.add_parser(commands)
    status_cli.add_parser(commands)
    node_cli.add_parser(commands)
    schedule_cli.add_parser(commands)

    dev = commands.add_parser(
        "dev-cluster",
        help="start local dockerd nodes and serve them (needs root and dockerd)",
    )
    dev.add_argument(
        "--nodes", type=_count, default=3, metavar="N", help="how many nodes (default 3)"
    )
    dev.add_argument(
        "--listen",
        default=config_module.DEFAULT_LISTEN,
        metavar="ADDR",
        help=f"where the Docker API is served (default {config_module.DEFAULT_LISTEN})",
    )
    dev.add_argument(
        "--storage",
        default="memory://",
        metavar="URL",
        help="the index's storage, as [storage] url (default memory://)",
    )
    dev.add_argument(
        "--admin",
        default=DEFAULT_ADMIN,
        metavar="ADDR",
        help=f"the admin API's listener, for `swarmproxy node` (default {DEFAULT_ADMIN}; "
        '"" for none)',
    )
    dev.add_argument(
        "--workdir", metavar="DIR", help="where the nodes keep their data (default: under /tmp)"
    )
    return parser


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
            return config_cli.report(e)
        log.setup(config.log.level, config.log.format)

        def reload() -> Config:
            # SIGHUP reads the file again, with the same flags over it.
            return build_config(args)

        def serve(workers: Workers | None = None) -> None:
            # Imported here: in a worker, after the supervisor has set up the metrics'
            # shared directory, which prometheus-client reads once, when first imported.
            from swarmproxy.api.app import serve

            run(serve(config, reload=reload, workers=workers))

        if config.server.workers == 1:
            serve()
            return 0
        from swarmproxy.workers import supervise

        unix = [a for a in config.server.listen + config.admin.listen if a.startswith("unix://")]
        return supervise(config.server.workers, unix, serve)
    if args.command == "config":
        return config_cli.run(args)
    if args.command == "status":
        return status_cli.run(args)
    if args.command == "node":
        return node_cli.run(args)
    if args.command == "schedule":
        return schedule_cli.run(args)
    if args.command == "dev-cluster":
        from swarmproxy.devcluster import dev_config, run_dev_cluster

        try:
            config = dev_config(args.listen, args.storage, args.admin)
        except ConfigError as e:
            return config_cli.report(e)
        return run_dev_cluster(config, args.nodes, args.workdir)
    return 1
