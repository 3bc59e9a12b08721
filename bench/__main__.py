"""`python -m bench [--quick] [--out DIR] [--only ROWS] [--proxy URL --node URL]`

Brings up 3 dockerd nodes, a redis-server and swarmproxy processes (or takes the given
addresses), measures the proxy against one node reached directly, tears everything down,
writes DIR/results.md and DIR/results.json, and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import pathlib
import signal
import sys

from bench.report import machine_info, markdown_table, write_report
from bench.settings import FULL, QUICK
from bench.suite import GROUP_NAMES, Options, Outcome, run
from bench.targets import REPO_ROOT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[2])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=REPO_ROOT / "bench" / "results",
        metavar="DIR",
        help="where results.md and results.json go (default: bench/results)",
    )
    parser.add_argument(
        "--only",
        metavar="ROWS",
        help=f"comma-separated groups of rows to run, among: {', '.join(GROUP_NAMES)}",
    )
    parser.add_argument("--proxy", metavar="URL", help="a running proxy (tcp://HOST:PORT)")
    parser.add_argument("--node", metavar="URL", help="with --proxy: one of its nodes, direct")
    parser.add_argument(
        "--node-name",
        default="node-1",
        help="with --proxy: the proxy's name for --node, to pin containers there",
    )
    parser.add_argument(
        "--proxy-log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="[log] level of the proxies this run starts (default info, as deployed)",
    )
    return parser


def _options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Options:
    groups = GROUP_NAMES
    if args.only:
        groups = [g.strip() for g in args.only.split(",") if g.strip()]
        unknown = [g for g in groups if g not in GROUP_NAMES]
        if unknown:
            parser.error(f"unknown row group(s) {unknown}; known: {', '.join(GROUP_NAMES)}")
    if bool(args.proxy) != bool(args.node):
        parser.error("--proxy and --node go together")
    return Options(
        settings=QUICK if args.quick else FULL,
        groups=groups,
        proxy_url=args.proxy or "",
        node_url=args.node or "",
        node_name=args.node_name,
        proxy_log_level=args.proxy_log_level,
    )


async def _main(options: Options) -> Outcome:
    # asyncio.run turns a Ctrl-C into a cancellation; a SIGTERM does the same here, so that
    # the teardown runs either way.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run(options)


def main() -> int:
    parser = _parser()
    args = parser.parse_args()
    options = _options(args, parser)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    try:
        outcome = asyncio.run(_main(options))
    except (KeyboardInterrupt, asyncio.CancelledError):
        logging.getLogger("bench").error("interrupted; everything started was stopped")
        return 130
    machine = machine_info(outcome.daemon_version)
    write_report(args.out, outcome.rows, machine, outcome.preamble, outcome.details)
    print(markdown_table(outcome.rows))
    print(f"written to {args.out / 'results.md'} and {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
