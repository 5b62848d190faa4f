"""The command line: `jobd` and `jobd serve` start the daemon."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from jobd import __version__
from jobd.config import OPTIONS, Config
from jobd.errors import ConfigError

COMMANDS = ("serve",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobd",
        description="A job daemon for research software containers. With no command: serve.",
    )
    parser.add_argument("--version", action="version", version=f"jobd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="start the HTTP daemon (the default)",
        description="Start the HTTP daemon. Each flag can also be set by the environment"
        " variable shown; a flag wins over the environment.",
    )
    for option in OPTIONS:
        default = option.default if option.default is not None else "none"
        if option.name == "workers":
            default = "the CPU count"
        serve.add_argument(
            option.flag,
            dest=option.name,
            metavar=option.metavar or None,
            help=f"{option.help} [env: {', '.join(option.envs)}; default: {default}]",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (
        args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "serve")
    parser = build_parser()
    args = parser.parse_args(args_list)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    try:
        config = Config.resolve(vars(args), os.environ)
    except ConfigError as exc:
        parser.exit(2, f"jobd: error: {exc}\n")
    from jobd.server import serve  # the server's imports are only needed to serve

    return serve(config)
