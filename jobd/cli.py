"""The command line: `jobd` and `jobd serve` start the daemon."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from jobd import __version__, frozen, logs
from jobd.client.api import ClientError, JobdClient, NotFinished
from jobd.client.commands import UsageError, add_client_commands, run_client_command
from jobd.client.exits import EXIT_CANCELLED, EXIT_ERROR, EXIT_PENDING, EXIT_USAGE
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
from jobd.config.profile import profile_path, read_profile
from jobd.errors import ConfigError
from jobd.run.executors.spawner import Spawner

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
    "wait",
    "retry",
    "schedule",
    "completion",
    "worker",
)
#: The shells `jobd completion` writes a script for (shtab's).
SHELLS = ("bash", "zsh", "tcsh")


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error said in one line (`jobd submit: error: ...`) and, for a
    mistyped flag, the flag it probably meant; every subcommand's parser is one of these."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def unrecognized(self, extras: list[str]) -> NoReturn:
        """The words this command's parser did not take, and what each probably was."""
        flags = [flag for flag in self._option_string_actions if flag.startswith("--")]
        hints = []
        for word in extras:
            if word.startswith("-"):
                close = difflib.get_close_matches(word.split("=", 1)[0], flags, n=1, cutoff=0.6)
                hints += [f"did you mean {close[0]}?"] if close else []
        said = " ".join(extras)
        kind = "argument" if len(extras) == 1 else "arguments"
        self.error(f"unrecognized {kind}: {said}" + (f"; {' '.join(hints)}" if hints else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    completion = commands.add_parser(
        "completion",
        help="print a shell completion script: jobd completion bash > /etc/bash_completion.d/jobd",
        description="Print the completion script of a shell for jobd's commands and flags,"
        " made from jobd's own parser (so it is never out of date). bash: source <(jobd"
        " completion bash); zsh: jobd completion zsh > ~/.zfunc/_jobd; tcsh: eval `jobd"
        " completion tcsh`.",
    )
    completion.add_argument("shell", choices=SHELLS)
    return parser


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Parser:
    """The parser of the (sub)command `args` were parsed for."""
    found = parser
    for attr in ("command", "verb"):
        name = getattr(args, attr, None)
        chooser = next(
            (a for a in found._actions if isinstance(a, argparse._SubParsersAction)), None
        )
        if name is None or chooser is None or name not in chooser.choices:
            break
        found = chooser.choices[name]
    assert isinstance(found, Parser)
    return found


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
    args, extras = parser.parse_known_args(args_list)
    if extras:
        _command_parser(parser, args).unrecognized(extras)
    logs.configure()
    frozen.claim_unpack_dirs()
    if args.command == "completion":
        return _completion(parser, args.shell)
    if args.command in ("serve", "worker"):
        # Only a daemon tidies up after killed runs: clients started side by side by a
        # script would take a neighbour's folder, freed as it exits normally but not yet
        # removed by its own loader, for a dead one's, and both would say so on stderr.
        frozen.remove_dead_unpack_dirs()
    if args.command == "worker":
        return _run_worker(parser, args)
    if args.command != "serve":
        return _run_client(args)
    try:
        config = Config.resolve(vars(args), os.environ)
    except ConfigError as exc:
        parser.exit(2, f"jobd: error: {exc}\n")
    spawner = Spawner.start()  # while jobd is one thread, and before the server's imports
    from jobd.server import serve  # the server's imports are only needed to serve

    return serve(config, spawner)


def _run_worker(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        config = WorkerConfig.resolve(vars(args), os.environ)
    except ConfigError as exc:
        parser.exit(2, f"jobd worker: error: {exc}\n")
    spawner = Spawner.start()  # while jobd is one thread, and before the worker's imports
    from jobd.worker.main import run_worker  # a worker needs none of the server's imports

    return run_worker(config, spawner)


def _completion(parser: argparse.ArgumentParser, shell: str) -> int:
    try:
        import shtab  # only here: no other command needs it
    except ImportError:
        print("jobd: error: jobd completion needs shtab: pip install shtab", file=sys.stderr)
        return EXIT_ERROR
    print(shtab.complete(parser, shell=shell, root_prefix="jobd"))
    return 0


def _run_client(args: argparse.Namespace) -> int:
    """A client command; whatever goes wrong is one line on stderr, never a traceback."""
    config: ClientConfig | None = None
    try:
        profile, warning = read_profile(profile_path(os.environ))
        if warning:
            print(f"jobd: warning: {warning}", file=sys.stderr)
        config = ClientConfig.resolve(vars(args), os.environ, profile)
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
    except UsageError as exc:
        print(f"jobd {_verb(args)}: error: {exc} (see jobd {_verb(args)} --help)", file=sys.stderr)
        return EXIT_USAGE
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


def _verb(args: argparse.Namespace) -> str:
    return " ".join(str(part) for part in (args.command, getattr(args, "verb", None)) if part)


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
