"""The command line: `jobd` and `jobd serve` start the daemon."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from jobd import __version__, frozen, logs
from jobd.client import ClientError, JobdClient
from jobd.config import CLIENT_OPTIONS, OPTIONS, ClientConfig, Config, Option
from jobd.errors import ConfigError
from jobd.models import JobStatus, is_terminal
from jobd.schedule_cli import add_schedule_commands, run_schedule_command

COMMANDS = ("serve", "submit", "get", "cancel", "health", "schedule")


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
    _add_client_commands(commands)
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


def _add_client_commands(commands: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    _add_options(common, CLIENT_OPTIONS)
    submit = commands.add_parser(
        "submit", parents=[common], help="upload a job folder or zip; prints the job"
    )
    submit.add_argument("path", type=Path, help="a folder with run.sh at its top, or a zip")
    submit.add_argument("--id", help="the job's ID (default: one is generated)")
    submit.add_argument("--timeout", help="the job's time limit, e.g. 30m")
    submit.add_argument(
        "--retry",
        type=int,
        metavar="N",
        help="attempts in all: a failed one runs again after 1 s, 2 s, 4 s... (up to 1 min)",
    )
    submit.add_argument("--wait", action="store_true", help="wait until the job is finished")
    submit.add_argument("--out", type=Path, help="with --wait: write the result zip here")
    get = commands.add_parser("get", parents=[common], help="print a job; save its result zip")
    get.add_argument("id")
    get.add_argument("--wait", type=float, default=0.0, help="long-poll up to this many seconds")
    get.add_argument("--out", type=Path, help="write the result zip here once it is finished")
    cancel = commands.add_parser("cancel", parents=[common], help="cancel a queued or running job")
    cancel.add_argument("id")
    commands.add_parser(
        "health", parents=[common], help="exit 0 if the daemon answers healthy (for HEALTHCHECK)"
    )
    add_schedule_commands(commands, common)


def _run_client(args: argparse.Namespace) -> int:
    """Prints the answer; exits 1 when a fetched job ended FAILED or CANCELLED."""
    config = ClientConfig.resolve(vars(args), os.environ)
    client = JobdClient(config.url, config.token)
    if args.command == "schedule":
        return run_schedule_command(args, client)
    if args.command in ("health", "cancel"):
        answer = client.health() if args.command == "health" else client.cancel(args.id)
        print(json.dumps(answer, indent=2))
        return 0
    if args.command == "submit":
        job = client.submit(args.path, args.id, args.timeout, args.retry)
        if args.wait:
            job = _fetch(client, str(job["ID"]), None, args.out)
    else:
        job = _fetch(client, args.id, args.wait, args.out)
    print(json.dumps(job, indent=2))
    return 1 if job.get("Status") in (JobStatus.FAILED.value, JobStatus.CANCELLED.value) else 0


def _fetch(client: JobdClient, job_id: str, wait: float | None, out: Path | None) -> dict:
    """The job after `wait` seconds (None: until finished), its result zip written to `out`."""
    if out is None:
        return client.wait(job_id, None, wait) if wait is None else client.get(job_id, wait)
    partial = out.with_name(f".{out.name}.part")
    with open(partial, "wb") as result:
        job = client.wait(job_id, result, wait)
    if is_terminal(job.get("Status")):
        partial.replace(out)
    else:
        partial.unlink()
    return job


def main(argv: Sequence[str] | None = None) -> int:
    frozen.remove_launch_copy()
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (
        args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "serve")
    parser = build_parser()
    args = parser.parse_args(args_list)
    logs.configure()
    frozen.claim_unpack_dirs()
    frozen.remove_dead_unpack_dirs()
    if args.command != "serve":
        try:
            return _run_client(args)
        except (ClientError, ConfigError, OSError) as exc:
            print(f"jobd: error: {exc}", file=sys.stderr)
            return 1
    try:
        config = Config.resolve(vars(args), os.environ)
    except ConfigError as exc:
        parser.exit(2, f"jobd: error: {exc}\n")
    from jobd.server import serve  # the server's imports are only needed to serve

    return serve(config)
