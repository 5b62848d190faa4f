"""The command line: `jobd` and `jobd serve` start the daemon."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Sequence

from jobd import __version__, frozen, logs
from jobd.client.api import ClientError, JobdClient, NotFinished
from jobd.client.commands import (
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_PENDING,
    add_client_commands,
    run_client_command,
)
from jobd.client.schedule_commands import add_schedule_commands, run_schedule_command
from jobd.config.options import (
    CLIENT_OPTIONS,
    OPTIONS,
    WORKER_OPTIONS,
    ClientConfig,
    Config,
    Option,
    WorkerConfig,
)
from jobd.errors import ConfigError

#: What a shell reports for a process ended by SIGPIPE.
EXIT_BROKEN_PIPE = 128 + 13
COMMANDS = (
    "serve",
    "submit",
    "status",
    "logs",
    "cancel",
    "result",
    "list",
    "get",
    "health",
    "schedule",
    "worker",
)


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
    _add_options(serve, OPTIONS)
    worker = commands.add_parser(
        "worker",
        help="run a central jobd's pull-service jobs on this host",
        description="Pull the jobs of a service declared --service NAME:runner=pull from the"
        " central jobd at URL and run them here; only outbound HTTP is needed. The token is"
        " read from JOBD_TOKEN. Stops on SIGTERM: running jobs get --kill-grace to finish,"
        " then go back to the central jobd for another worker.",
    )
    worker.add_argument("url", metavar="URL", help="the central jobd, e.g. http://head:8080")
    _add_options(worker, WORKER_OPTIONS[1:])
    common = argparse.ArgumentParser(add_help=False)
    _add_options(common, CLIENT_OPTIONS)
    add_client_commands(commands, common)
    add_schedule_commands(commands, common)
    return parser


def _add_options(parser: argparse.ArgumentParser, options: tuple[Option, ...]) -> None:
    for option in options:
        parser.add_argument(
            option.flag,
            dest=option.name,
            metavar=option.metavar or None,
            action="append" if option.repeat else "store",
            help=option.help_text.replace("%", "%%"),  # argparse formats help with %
        )


def main(argv: Sequence[str] | None = None) -> int:
    frozen.remove_launch_copy()
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and not args_list[0].startswith("-") and args_list[0] not in COMMANDS:
        print(_unknown_command(args_list[0]), file=sys.stderr)
        return 2
    if not args_list or args_list[0] not in (*COMMANDS, "-h", "--help", "--version"):
        args_list.insert(0, "serve")  # `jobd --port 9000` serves
    parser = build_parser()
    args = parser.parse_args(args_list)
    logs.configure()
    frozen.claim_unpack_dirs()
    frozen.remove_dead_unpack_dirs()
    if args.command == "worker":
        return _run_worker(parser, args)
    if args.command != "serve":
        return _run_client(args)
    try:
        config = Config.resolve(vars(args), os.environ)
    except ConfigError as exc:
        parser.exit(2, f"jobd: error: {exc}\n")
    from jobd.server import serve  # the server's imports are only needed to serve

    return serve(config)


def _run_worker(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        config = WorkerConfig.resolve(vars(args), os.environ)
    except ConfigError as exc:
        parser.exit(2, f"jobd worker: error: {exc}\n")
    from jobd.worker.main import run_worker  # a worker needs none of the server's imports

    return run_worker(config)


def _run_client(args: argparse.Namespace) -> int:
    """A client command; whatever goes wrong is one line on stderr, never a traceback."""
    config: ClientConfig | None = None
    try:
        config = ClientConfig.resolve(vars(args), os.environ)
        client = JobdClient(config.url, config.token)
        if args.command == "schedule":
            return run_schedule_command(args, client)
        return run_client_command(args, client)
    except BrokenPipeError:  # `jobd logs ID | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except NotFinished as exc:
        print(f"jobd: {exc}: no result yet", file=sys.stderr)
        return EXIT_PENDING
    except ClientError as exc:
        print(f"jobd: error: {_explain(exc, config)}", file=sys.stderr)
    except (ConfigError, OSError) as exc:
        print(f"jobd: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("jobd: interrupted", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as exc:  # a bug: still one line, with enough to report it
        print(f"jobd: error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
    return EXIT_ERROR


def _explain(exc: ClientError, config: ClientConfig | None) -> str:
    """The daemon's message, with what a command-line user can do about a token."""
    code = f" (HTTP {exc.status})" if exc.status else ""
    if exc.status != 401 or config is None:
        return exc.message + code
    if config.token is None:
        return f"jobd at {config.url} needs a token: pass --token TOKEN or set JOBD_TOKEN{code}"
    return f"jobd at {config.url} refused the token: check --token or JOBD_TOKEN{code}"


def _unknown_command(word: str) -> str:
    close = difflib.get_close_matches(word, COMMANDS, n=1)
    if word.lstrip("-") in ("version", "help"):
        close = [f"--{word.lstrip('-')}"]
    hint = f"did you mean '{close[0]}'? " if close else ""
    return (
        f"jobd: {word!r} is not a jobd command; {hint}the commands are {', '.join(COMMANDS)}"
        " (jobd COMMAND --help for one; with no command, or only flags, jobd serves)"
    )
