"""`jobd submit/status/logs/cancel/result/list/get/health`: the daemon driven from a shell.

Scripts rely on the exit codes: `submit --wait` exits with run.sh's own code (124 when the
job was killed by its time limit, as timeout(1) does; 130 when cancelled), 1 for an error
(one line on stderr), 2 for a usage error, and `EXIT_PENDING` when a job is not finished
in the time a command was given to wait."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from jobd.client.api import ClientError, Job, JobdClient, NotFinished, refuse_taken
from jobd.client.terminal import print_jobs, status_line, upload_bar
from jobd.models import is_terminal

EXIT_ERROR = 1
#: Not finished in the time given: neither a result nor an error.
EXIT_PENDING = 3
EXIT_TIMEOUT = 124
EXIT_CANCELLED = 130
_ENV_ITEM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)


def add_client_commands(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    submit = commands.add_parser(
        "submit",
        parents=[common],
        help="upload a job folder or zip; with --wait, hand back its files and exit code",
        description="Upload a job: a folder with run.sh at its top (zipped for you, empty"
        " folders kept) or a zip. Prints the job's ID. With --wait: waits, unpacks the result"
        " into -o OUT_DIR and exits with run.sh's exit code (124: timed out, 130: cancelled).",
    )
    submit.add_argument("path", type=Path, help="a folder with run.sh at its top, or a zip")
    submit.add_argument("--id", help="the job's ID (default: one is generated)")
    submit.add_argument("--slurm", action="store_true", help="run it through Slurm's sbatch")
    submit.add_argument("--timeout", metavar="DUR", help="the job's time limit, e.g. 30m")
    submit.add_argument(
        "--env",
        action="append",
        metavar="K=V",
        help="an environment variable for run.sh (repeat for more)",
    )
    submit.add_argument(
        "--retry",
        type=int,
        metavar="N",
        help="attempts in all: a failed one runs again after 1 s, 2 s, 4 s... (up to 1 min)",
    )
    submit.add_argument("--callback-url", metavar="URL", help="POSTed the job when it ends")
    submit.add_argument("--wait", action="store_true", help="wait, then unpack the result")
    submit.add_argument(
        "-o",
        "--out",
        type=Path,
        metavar="OUT_DIR",
        help="with --wait: unpack the result here (default ./<id>-results); a name ending"
        " in .zip gets the zip itself",
    )
    submit.add_argument("--json", action="store_true", help="print the job object")

    status = commands.add_parser("status", parents=[common], help="a job's status")
    status.add_argument("id")
    status.add_argument("--json", action="store_true", help="the job object, as the API sends it")

    logs = commands.add_parser("logs", parents=[common], help="run.sh's output")
    logs.add_argument("id")
    logs.add_argument("-f", "--follow", action="store_true", help="until the job ends")
    logs.add_argument("--stderr", action="store_true", help="its stderr instead of stdout")

    cancel = commands.add_parser("cancel", parents=[common], help="cancel a queued or running job")
    cancel.add_argument("id")
    cancel.add_argument("--json", action="store_true", help="print the job object")

    result = commands.add_parser(
        "result", parents=[common], help="unpack a finished job's result into a folder"
    )
    result.add_argument("id")
    result.add_argument("-o", "--out", type=Path, metavar="OUT_DIR", help="default: ./<id>-results")

    listing = commands.add_parser("list", parents=[common], help="recent jobs, newest first")
    listing.add_argument("--status", help="only jobs in this state, e.g. RUNNING")
    listing.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    listing.add_argument("--before", type=int, metavar="INTID", help="the next page: older jobs")
    listing.add_argument("--json", action="store_true", help="the job objects")

    get = commands.add_parser(
        "get",
        parents=[common],
        help="print a job's object; save its result zip (as before; exit 3 if not finished)",
    )
    get.add_argument("id")
    get.add_argument("--wait", type=float, default=0.0, help="long-poll up to this many seconds")
    get.add_argument("--out", type=Path, help="write the result zip here once it is finished")

    commands.add_parser(
        "health", parents=[common], help="exit 0 if the daemon answers healthy (for HEALTHCHECK)"
    )


def run_client_command(args: argparse.Namespace, client: JobdClient) -> int:
    command = args.command
    if command == "submit":
        return _submit(args, client)
    if command == "status":
        job = client.get(args.id)
        _print_job(job) if args.json else _describe(job)
        return 0
    if command == "logs":
        for line in client.logs(args.id, args.follow, args.stderr):
            print(line, flush=True)
        return 0
    if command == "cancel":
        job = client.cancel(args.id)
        _print_job(job) if args.json else print(f"{job['ID']} {job['Status']}")
        return 0
    if command == "result":
        out = args.out or Path(f"{args.id}-results")
        print(f"{_outcome(client.download(args.id, out))}; files in {out}")
        return 0
    if command == "list":
        jobs = client.list(args.status, args.limit, args.before)
        _print_job(jobs) if args.json else print_jobs(jobs)
        return 0
    if command == "get":
        return _get(args, client)
    _print_job(client.health())
    return 0


def _submit(args: argparse.Namespace, client: JobdClient) -> int:
    env = dict(_env_item(item) for item in args.env or ())
    out = args.out or (Path(f"{args.id}-results") if args.id else None)
    if args.wait and out is not None and out.suffix.lower() != ".zip":
        refuse_taken(out)  # before the job runs, not after
    with upload_bar() as progress:
        job = client.submit(
            args.path,
            args.id,
            args.slurm,
            args.timeout,
            env,
            args.callback_url,
            args.retry,
            progress,
        )
    job_id = str(job["ID"])
    if not args.wait:
        _print_job(job) if args.json else print(job_id)
        return 0
    out = out or Path(f"{job_id}-results")
    try:
        with status_line() as show:
            job = _fetch(client, job, out, show)
    except KeyboardInterrupt:
        print(
            f"jobd: interrupted; job {job_id} keeps running (jobd cancel {job_id} ends it)",
            file=sys.stderr,
        )
        return EXIT_CANCELLED
    _print_job(job) if args.json else print(f"{_outcome(job)}; results in {out}", flush=True)
    return exit_code(job)


def _fetch(client: JobdClient, job: Job, out: Path, show: Callable[[Job], None] | None) -> Job:
    """Wait for the job and unpack its result into `out` (or save the zip, for a .zip): one
    long wait, or on a terminal one-second ones that keep the status line live. Only the
    answer that finds the job finished carries the result, so it is fetched once."""
    fetch = client.save_result if out.suffix.lower() == ".zip" else client.download
    if show is None:
        return fetch(str(job["ID"]), out, None)
    while True:
        show(job)
        try:
            return fetch(str(job["ID"]), out, 1.0)
        except NotFinished as pending:
            job = pending.job


def _get(args: argparse.Namespace, client: JobdClient) -> int:
    """`get` as it always was (the job object, the zip to --out), but a job that is not
    finished within --wait is exit 3 with a line that says so, never a silent 0."""
    try:
        if args.out is not None:
            job = client.save_result(args.id, args.out, args.wait)
        elif args.wait > 0:
            job = client.wait(args.id, args.wait)
        else:
            job = client.get(args.id)
    except NotFinished as exc:
        _print_job(exc.job)
        wrote = f"; {args.out} not written" if args.out is not None else ""
        print(f"jobd: {exc}{wrote}", file=sys.stderr)
        return EXIT_PENDING
    _print_job(job)
    return 1 if job.get("Status") in ("FAILED", "CANCELLED") else 0


def exit_code(job: Job) -> int:
    """run.sh's exit code for a finished job, as a shell would report it."""
    status, code = job.get("Status"), job.get("ExitCode")
    if status == "CANCELLED":
        return EXIT_CANCELLED
    if status == "FAILED" and code is None:
        return EXIT_TIMEOUT  # killed: by its time limit (a cancel is CANCELLED)
    if not isinstance(code, int):
        return 0 if status == "SUCCESS" else EXIT_ERROR
    if status == "FAILED" and code == 0:
        return EXIT_ERROR  # run.sh succeeded but jobd could not keep its result
    return min(code, 255)


def _outcome(job: Job) -> str:
    """`demo-2 SUCCESS, exit code 0`, or with what went wrong."""
    status, code, message = job.get("Status"), job.get("ExitCode"), job.get("Message")
    text = f"{job.get('ID')} {status}"
    if code is not None:
        text += f", exit code {code}"
    elif is_terminal(status) and status != "SUCCESS":
        text += f", exit code {exit_code(job)}"
    if message and status != "SUCCESS" and not code:  # a non-zero code says it already
        text += f" ({message})"
    return text


def _describe(job: Job) -> None:
    """The job object, one `Key: value` per line; empty fields left out."""
    width = max(len(key) for key in job)
    for key, value in job.items():
        if value not in (None, "", [], {}):
            shown = value if isinstance(value, str) else json.dumps(value)
            print(f"{key.ljust(width)}  {shown}")


def _print_job(answer: object) -> None:
    print(json.dumps(answer, indent=2))


def _env_item(item: str) -> tuple[str, str]:
    match = _ENV_ITEM.match(item)
    if match is None:
        raise ClientError(f"--env {item!r} is not NAME=VALUE (a name of letters, digits and _)")
    return match.group(1), match.group(2)
