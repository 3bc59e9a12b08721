"""The config `swarmproxy serve` runs with, and `swarmproxy config check`, which reports every
problem in it. Both go through `check_config`, so that a config the check passes is one
`serve` takes, and the reverse."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from swarmproxy import config as config_module
from swarmproxy.cluster.healer import load_healer
from swarmproxy.cluster.hooks import EVENTS, load_hook
from swarmproxy.config import Config, ConfigError
from swarmproxy.node_cli import table
from swarmproxy.scheduler import make_scheduler
from swarmproxy.scheduler.filters import make_filters

# The exit status of a bad config, as of a usage error: argparse exits 2 too.
EXIT_CONFIG = 2
NODE_COLUMNS = ("NAME", "ADDRESS", "TLS", "LABELS")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Where the config comes from: `serve` and `config check` take the same flags."""
    parser.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        help="TOML config file (SWARMPROXY_<SECTION>_<KEY> variables override it)",
    )
    parser.add_argument(
        "--listen",
        "-l",
        action="append",
        metavar="ADDR",
        help="tcp://HOST:PORT or unix:///PATH to listen on; repeat for several; "
        "replaces the config's server.listen",
    )
    parser.add_argument(
        "--node",
        "-n",
        action="append",
        metavar="[NAME=]ADDR",
        help="a node (tcp://HOST:PORT or unix:///PATH); repeat for several; "
        "replaces the config's nodes unless --add-nodes",
    )
    parser.add_argument(
        "--add-nodes",
        action="store_true",
        help="add the --node flags to the config's nodes instead of replacing them",
    )


def check_config(args: argparse.Namespace) -> tuple[Config, list[ConfigError]]:
    """The config of the file, the environment and the flags, and every problem in it, the
    one `serve` would report first, first. A bad key keeps its default."""
    try:
        raw = config_module.read(args.config)
    except ConfigError as e:
        # Nothing to check without the file's or the environment's settings.
        return Config(), [e]
    config, problems = config_module.check(raw)
    if args.listen:
        for address in args.listen:
            problems += config_module.check({"server": {"listen": [address]}})[1]
        config.server.listen = list(args.listen)
    if args.node:
        nodes = []
        for spec in args.node:
            try:
                nodes.append(config_module.parse_node(spec, "--node"))
            except ConfigError as e:
                problems.append(e)
        config.nodes = (config.nodes + nodes) if args.add_nodes else nodes
        # Names and addresses must stay unique with the flags' nodes among the file's.
        problems += config_module.check(
            {"nodes": [{"address": n.address, "name": n.name} for n in config.nodes]}
        )[1]
    problems += _loading_problems(config)
    if not config.nodes and not problems:
        problems.append(
            ConfigError("nodes", "no node given: add [[nodes]] to the config or --node")
        )
    return config, problems


def _loading_problems(config: Config) -> list[ConfigError]:
    """What the code the config names (strategy, filters, healer, hooks) says of it, loaded
    as the cluster will load it."""
    loads: list[tuple[str, Callable[[], Any]]] = [
        ("scheduler.strategy", partial(make_scheduler, config.scheduler.strategy)),
        ("scheduler.filters", partial(make_filters, config.scheduler.filters)),
        ("scheduler.filters", partial(_include_health, config.scheduler.filters)),
        ("health.healer", partial(load_healer, config.health.healer)),
        *(
            (f"hooks.{event}", partial(load_hook, spec))
            for event in EVENTS
            for spec in getattr(config.hooks, event)
        ),
    ]
    problems = []
    for key, load in loads:
        try:
            load()
        except ValueError as e:
            problems.append(ConfigError(key, str(e)))
    return problems


def _include_health(filters: list[str]) -> None:
    if "health" not in filters:
        # Scheduling must never pick a node that is down or drained.
        raise ValueError("must include health")


def build_config(args: argparse.Namespace) -> Config:
    """The config `serve` runs with; its first problem raised."""
    config, problems = check_config(args)
    if problems:
        raise problems[0]
    return config


def report(problem: ConfigError) -> int:
    """Says what is wrong, on one line that starts with the key; the exit status for it."""
    print(f"swarmproxy: config error: {problem}", file=sys.stderr)
    return EXIT_CONFIG


def add_parser(commands: Any) -> None:
    config = commands.add_parser("config", help="check a config file before serving it")
    actions = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="validate a config as `serve` would read it, and summarise it",
        description="Validate the config file, the SWARMPROXY_* variables over it and the\n"
        "flags over both, exactly as `swarmproxy serve` reads them (strategy, filters,\n"
        "healer and hooks are loaded too), and list every problem with its key.\n"
        "Neither the nodes nor the storage are contacted.",
    )
    add_config_options(check)


def run(args: argparse.Namespace) -> int:
    config, problems = check_config(args)
    source = _source(args.config)
    if problems:
        for problem in problems:
            report(problem)
        count = f"{len(problems)} problem{'s' * (len(problems) > 1)}"
        print(f"swarmproxy: {source}: {count}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{source}: valid")
    print(_summary(config))
    return 0


def _source(path: str | None) -> str:
    """Where the config came from: the file, and the variables that override it."""
    variables = sorted(filter(config_module.is_setting, os.environ))
    source = path or "no config file"
    return f"{source} with {', '.join(variables)}" if variables else source


def _summary(config: Config) -> str:
    tls = " (TLS)" if config.server.tls else ""
    lines = [
        ("listeners", ", ".join(config.server.listen) + tls),
        ("admin", ", ".join(config.admin.listen) or "none"),
        ("storage", f"{_redacted(config.storage.url)} (prefix {config.storage.prefix})"),
        ("workers", str(config.server.workers)),
        (
            "scheduler",
            f"{config.scheduler.strategy}; filters {', '.join(config.scheduler.filters)}",
        ),
        ("nodes", str(len(config.nodes))),
    ]
    rows = [
        (
            n.name,
            n.address,
            "yes" if n.tls else "no",
            ",".join(f"{k}={v}" for k, v in sorted(n.labels.items())) or "-",
        )
        for n in config.nodes
    ]
    summary = [f"{key + ':':<11}{value}" for key, value in lines]
    return "\n".join([*summary, table(NODE_COLUMNS, rows)])


def _redacted(url: str) -> str:
    """A storage URL without its passwords: the summary may end up in a CI log."""
    url = re.sub(r"(://[^/@]*?:)[^/@]*@", r"\1***@", url)
    return re.sub(r"(password=)[^&]*", r"\1***", url)
