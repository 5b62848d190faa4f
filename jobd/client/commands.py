"""`jobd submit/status/logs/cancel/result/list/get/health/wait/retry`: the daemon driven from a
shell. Every command that reports a finished job exits by one table (client/exits.py)."""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from jobd.client.api import (
    ClientError,
    Job,
    JobdClient,
    LeftOutList,
    NotFinished,
    refuse_taken,
)
from jobd.client.exits import (
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PENDING,
    FROM_CLI,
    FROM_JOB,
    exit_code,
    outcome,
    reported,
)
from jobd.client.terminal import ask, print_jobs, status_line, upload_bar
from jobd.config.units import parse_duration
from jobd.errors import ConfigError
from jobd.models import is_terminal

_ENV_ITEM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
#: The most `/api/jobs` lists in one answer: `cancel --all` pages through with it.
_PAGE = 1000
#: Left-out entries named on the one stderr line; the rest are counted.
_NAMED_LEFT_OUT = 8


class UsageError(Exception):
    """A combination of arguments argparse cannot see is wrong: exit 2, like its own."""


def add_client_commands(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    submit = commands.add_parser(
        "submit",
        parents=[common],
        help="upload a job folder or zip; with --wait, hand back its files and exit code",
        description="Upload a job: a folder with run.sh at its top (zipped for you, empty"
        " folders kept) or a zip. Prints the job's ID. With --wait: waits, unpacks the result"
        " into -o OUT and exits with run.sh's exit code (the table in jobd's docs/cli.md).",
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
    _add_waiting(submit, "wait, then unpack the result")

    status = commands.add_parser("status", parents=[common], help="a job's status")
    status.add_argument("id")
    _add_json(status, "the job object, as the API sends it")

    logs = commands.add_parser("logs", parents=[common], help="run.sh's output")
    logs.add_argument("id")
    logs.add_argument("-f", "--follow", action="store_true", help="until the job ends")
    streams = logs.add_mutually_exclusive_group()
    streams.add_argument("--stderr", action="store_true", help="its stderr instead of stdout")
    streams.add_argument(
        "--both", action="store_true", help="stdout and stderr, each line labelled"
    )
    logs.add_argument("--tail", type=_count, metavar="N", help="only the last N lines")
    _add_json(logs, "the lines as a JSON object of lists, by stream")

    cancel = commands.add_parser(
        "cancel",
        parents=[common],
        help="cancel queued or running jobs: IDs, or --status S --all",
        description="Cancel each job named, or with --status queued|running --all every job in"
        " that state (after a y/N question on a terminal; --yes skips it). A job that already"
        " finished is reported and the others go on.",
    )
    cancel.add_argument("ids", nargs="*", metavar="ID")
    cancel.add_argument(
        "--status", type=str.lower, choices=("queued", "running"), help="with --all"
    )
    cancel.add_argument("--all", action="store_true", help="every job in --status's state")
    cancel.add_argument("-y", "--yes", action="store_true", help="no question on a terminal")
    _add_json(cancel, "the cancelled jobs' objects")

    result = commands.add_parser(
        "result",
        parents=[common],
        help="a finished job's result: a folder, or with -o X.zip the zip",
        description="Unpack a finished job's result into -o OUT (or write the zip, for a name"
        " ending in .zip) and exit with its exit code; exit 3 if it is not finished (--wait"
        " waits).",
    )
    result.add_argument("id")
    result.add_argument("--wait", action="store_true", help="wait for the job to finish")
    result.add_argument("--timeout", metavar="DUR", help="with --wait: give up after DUR")
    _add_out(result)
    _add_json(result, "print the job object")
    _add_exit_from(result)

    listing = commands.add_parser("list", parents=[common], help="recent jobs, newest first")
    listing.add_argument("--status", help="only jobs in this state, e.g. RUNNING")
    listing.add_argument("--limit", type=_count, default=50, help="how many (default 50)")
    listing.add_argument("--before", type=int, metavar="INTID", help="the next page: older jobs")
    _add_json(listing, "the job objects")

    get = commands.add_parser(
        "get",
        parents=[common],
        help="print a job's object; save its result zip (exit as the table; 3 if not finished)",
    )
    get.add_argument("id")
    get.add_argument("--wait", type=float, default=0.0, help="long-poll up to this many seconds")
    get.add_argument("--out", type=Path, help="write the result zip here once it is finished")
    _add_exit_from(get)

    wait = commands.add_parser(
        "wait",
        parents=[common],
        help="wait for jobs to finish; exit as submit --wait would",
        description="Wait for each job to finish and print its outcome. Exits with the code of"
        " the first job, in the order given, that did not succeed (3 for one still pending when"
        " --timeout passed), else 0.",
    )
    wait.add_argument("ids", nargs="+", metavar="ID")
    wait.add_argument("--timeout", metavar="DUR", help="give up after DUR (e.g. 30s, 10m)")
    _add_json(wait, "print the job objects")
    _add_exit_from(wait)

    retry = commands.add_parser(
        "retry",
        parents=[common],
        help="a new job from a finished one's input and settings; prints its ID",
    )
    retry.add_argument("id")
    _add_waiting(retry, "wait for the new job, then unpack its result")

    health = commands.add_parser(
        "health", parents=[common], help="exit 0 if the daemon answers healthy (for HEALTHCHECK)"
    )
    _add_json(health, "the answer (always printed as JSON)")


def _add_waiting(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--wait", action="store_true", help=text)
    _add_out(parser)
    _add_json(parser, "print the job object")
    _add_exit_from(parser)


def _add_out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        metavar="OUT",
        help="unpack the result into this folder (default ./<id>-results); a name ending in"
        " .zip gets the zip itself",
    )


def _add_json(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--json", action="store_true", help=text)


def _add_exit_from(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--exit-code-from",
        choices=(FROM_JOB, FROM_CLI),
        help="job: exit with the job's code (the table); cli: 0 once the job is reported,"
        " whatever its state, so 1, 2 and 3 are the command's own [env: JOBD_EXIT_CODE_FROM;"
        " default: job]",
    )


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (0 or more)")
    return value


def run_client_command(args: argparse.Namespace, client: JobdClient) -> int:
    handler: Callable[[argparse.Namespace, JobdClient], int] = {
        "submit": _submit,
        "status": _status,
        "logs": _logs,
        "cancel": _cancel,
        "result": _result,
        "list": _list,
        "get": _get,
        "wait": _wait,
        "retry": _retry,
        "health": _health,
    }[args.command]
    return handler(args, client)


def exit_from(args: argparse.Namespace) -> str:
    """`--exit-code-from`, else JOBD_EXIT_CODE_FROM, else `job`."""
    given = getattr(args, "exit_code_from", None) or os.environ.get("JOBD_EXIT_CODE_FROM")
    if given in (None, ""):
        return FROM_JOB
    if given not in (FROM_JOB, FROM_CLI):
        raise ConfigError(f"JOBD_EXIT_CODE_FROM: {given!r} is neither {FROM_JOB} nor {FROM_CLI}")
    return str(given)


# ---------------------------------------------------------------------- jobs in and out


def _submit(args: argparse.Namespace, client: JobdClient) -> int:
    env = dict(_env_item(item) for item in args.env or ())
    out = args.out or (Path(f"{args.id}-results") if args.id else None)
    if args.wait and out is not None:
        _refuse_taken(out)  # before the job runs, not after
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
            _tell_left_out(args.path),
        )
    return _then(args, client, job, out)


def _retry(args: argparse.Namespace, client: JobdClient) -> int:
    if args.wait and args.out is not None:
        _refuse_taken(args.out)
    return _then(args, client, client.retry(args.id), args.out)


def _then(args: argparse.Namespace, client: JobdClient, job: Job, out: Path | None) -> int:
    """After a job was made: its ID (or object), or with --wait its result and exit code."""
    job_id = str(job["ID"])
    if not args.wait:
        _print_json(job) if args.json else print(job_id)
        return EXIT_OK
    out = out or Path(f"{job_id}-results")
    try:
        with status_line() as show:
            job = _fetch(client, job, out, show, None)
    except KeyboardInterrupt:
        print(
            f"jobd: interrupted; job {job_id} keeps running (jobd cancel {job_id} ends it)",
            file=sys.stderr,
        )
        return EXIT_CANCELLED
    _print_json(job) if args.json else print(f"{outcome(job)}; results in {out}", flush=True)
    return reported(job, exit_from(args))


def _fetch(
    client: JobdClient,
    job: Job,
    out: Path,
    show: Callable[[Job], None] | None,
    limit: float | None,
) -> Job:
    """Wait for the job (up to `limit` seconds) and unpack its result into `out` (or save the
    zip, for a .zip): one long wait, or on a terminal one-second ones that keep the status
    line live. Only the answer that finds the job finished carries the result, so it is
    fetched once."""
    fetch = client.save_result if _is_zip(out) else client.download
    if show is None:
        return fetch(str(job["ID"]), out, limit)
    deadline = None if limit is None else time.monotonic() + limit
    while True:
        show(job)
        left = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
        try:
            return fetch(str(job["ID"]), out, left)
        except NotFinished as pending:
            job = pending.job
            if deadline is not None and time.monotonic() >= deadline:
                raise NotFinished(job, limit) from None


def _result(args: argparse.Namespace, client: JobdClient) -> int:
    out = args.out or Path(f"{args.id}-results")
    if args.timeout is not None and not args.wait:
        raise UsageError("--timeout is how long --wait waits: give --wait too")
    limit = _duration(args.timeout, "--timeout") if args.wait else 0.0
    _refuse_taken(out)
    with status_line() if args.wait else contextlib.nullcontext() as show:
        job = _fetch(client, {"ID": args.id, "Status": "waiting"}, out, show, limit)
    if args.json:
        _print_json(job)
    else:
        print(f"{outcome(job)}; {'zip' if _is_zip(out) else 'files'} in {out}")
    return reported(job, exit_from(args))


def _get(args: argparse.Namespace, client: JobdClient) -> int:
    """`get` as it always was (the job object, the zip to --out), but a job that is not
    finished within --wait is exit 3 with a line that says so, never a silent 0; a finished
    one exits by the table, as `result` does."""
    try:
        if args.out is not None:
            job = client.save_result(args.id, args.out, args.wait)
        elif args.wait > 0:
            job = client.wait(args.id, args.wait)
        else:
            job = client.get(args.id)
    except NotFinished as exc:
        _print_json(exc.job)
        wrote = f"; {args.out} not written" if args.out is not None else ""
        print(f"jobd: {exc}{wrote}", file=sys.stderr)
        return EXIT_PENDING
    _print_json(job)
    if not is_terminal(job.get("Status")):
        return EXIT_PENDING
    return reported(job, exit_from(args))


def _wait(args: argparse.Namespace, client: JobdClient) -> int:
    """Each job in turn against one deadline; the first that did not succeed decides."""
    limit = _duration(args.timeout, "--timeout")
    deadline = None if limit is None else time.monotonic() + limit
    codes, jobs = [], []
    for job_id in args.ids:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            with status_line() as show:
                job = _waited(client, job_id, left, show)
        except NotFinished as exc:
            status = exc.job.get("Status")
            print(f"jobd: job {job_id!r} is still {status} after {args.timeout}", file=sys.stderr)
            jobs.append(exc.job)
            codes.append(EXIT_PENDING)
            continue
        except ClientError as exc:
            if exc.status is None:  # the daemon is gone: so are the other answers
                raise
            print(f"jobd: error: {exc.message} (HTTP {exc.status})", file=sys.stderr)
            codes.append(EXIT_ERROR)
            continue
        jobs.append(job)
        codes.append(reported(job, exit_from(args)))
        if not args.json:
            print(outcome(job), flush=True)
    if args.json:
        _print_json(jobs if len(args.ids) > 1 else next(iter(jobs), None))
    return next((code for code in codes if code != EXIT_OK), EXIT_OK)


def _waited(
    client: JobdClient, job_id: str, limit: float | None, show: Callable[[Job], None] | None
) -> Job:
    if show is None:
        return client.wait(job_id, limit)
    deadline = None if limit is None else time.monotonic() + limit
    job = client.get(job_id)
    while not is_terminal(job.get("Status")):
        show(job)
        left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
        if left <= 0:
            raise NotFinished(job, limit)
        job = client.get(job_id, left)
    return job


# ---------------------------------------------------------------------- looking at jobs


def _status(args: argparse.Namespace, client: JobdClient) -> int:
    job = client.get(args.id)
    _print_json(job) if args.json else _describe(job)
    return EXIT_OK


def _list(args: argparse.Namespace, client: JobdClient) -> int:
    jobs = client.list(args.status, args.limit, args.before)
    _print_json(jobs) if args.json else print_jobs(jobs)
    return EXIT_OK


def _health(args: argparse.Namespace, client: JobdClient) -> int:
    _print_json(client.health())
    return EXIT_OK


def _logs(args: argparse.Namespace, client: JobdClient) -> int:
    if args.json and args.follow:
        raise UsageError("--json prints the lines so far: it does not go with --follow")
    streams = ("stdout", "stderr") if args.both else ("stderr",) if args.stderr else ("stdout",)
    if args.json:
        _print_json(
            {name: list(_lines(client, args.id, name, False, args.tail)) for name in streams}
        )
        return EXIT_OK
    if len(streams) == 1:
        for line in _lines(client, args.id, streams[0], args.follow, args.tail):
            print(line, flush=True)
        return EXIT_OK
    if not args.follow:
        for name in streams:
            for line in _lines(client, args.id, name, False, args.tail):
                print(f"[{name}] {line}", flush=True)
        return EXIT_OK
    return _follow_both(client, args.id, args.tail)


def _lines(
    client: JobdClient, job_id: str, stream: str, follow: bool, tail: int | None
) -> Iterable[str]:
    """A stream's lines; with `tail`, only its last N so far (and, following, the rest as
    they come: the lines already shown are skipped in the follow's answer)."""
    if tail is None:
        return client.logs(job_id, follow, stream == "stderr")
    seen, last = 0, collections.deque[str](maxlen=tail)
    for line in client.logs(job_id, False, stream == "stderr"):
        seen += 1
        last.append(line)
    if not follow:
        return last

    def rest() -> Iterable[str]:
        yield from last
        for number, line in enumerate(client.logs(job_id, True, stream == "stderr")):
            if number >= seen:
                yield line

    return rest()


def _follow_both(client: JobdClient, job_id: str, tail: int | None) -> int:
    """Both streams followed at once, each line labelled as it comes."""
    lock, failures = threading.Lock(), []
    streams = {name: _lines(client, job_id, name, True, tail) for name in ("stdout", "stderr")}

    def copy(name: str) -> None:
        try:
            for line in streams[name]:
                with lock:
                    print(f"[{name}] {line}", flush=True)
        except (ClientError, OSError) as exc:
            failures.append(exc)

    threads = [threading.Thread(target=copy, args=(name,), daemon=True) for name in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # a main thread that can still take Ctrl-C
    if failures:
        raise failures[0]
    return EXIT_OK


# ---------------------------------------------------------------------- cancel


def _cancel(args: argparse.Namespace, client: JobdClient) -> int:
    if args.status is None and args.all:
        raise UsageError("--all cancels every job in a state: give --status queued|running")
    if args.status is not None:
        if not args.all:
            raise UsageError(
                f"--status {args.status} cancels every {args.status} job only with --all"
            )
        if args.ids:
            raise UsageError("give IDs or --status ... --all, not both")
        return _cancel_all(args, client)
    if not args.ids:
        raise UsageError("give the IDs of the jobs to cancel, or --status queued|running --all")
    return _cancel_each(args, client, args.ids)[0]


def _cancel_all(args: argparse.Namespace, client: JobdClient) -> int:
    state = args.status.upper()
    ids = [str(job["ID"]) for job in _every(client, state)]
    if not ids:
        print(f"no {args.status} jobs: nothing to cancel", file=sys.stderr)
        return EXIT_OK
    question = f"cancel {_jobs(len(ids), args.status)} ({', '.join(ids[:3])}"
    question += ", ...)?" if len(ids) > 3 else ")?"
    if not args.yes and not ask(question):
        print("jobd: nothing cancelled", file=sys.stderr)
        return EXIT_ERROR
    code, done = _cancel_each(args, client, ids, quiet_if_finished=True)
    print(f"cancelled {len(done)} of {_jobs(len(ids), args.status)}", file=sys.stderr)
    return code


def _every(client: JobdClient, state: str) -> list[Job]:
    found: list[Job] = []
    before = None
    while True:
        page = client.list(state, _PAGE, before)
        found += page
        if len(page) < _PAGE:
            return found
        before = int(page[-1]["IntID"])


def _cancel_each(
    args: argparse.Namespace, client: JobdClient, ids: list[str], quiet_if_finished: bool = False
) -> tuple[int, list[Job]]:
    """Each job in turn; one that cannot be cancelled is said in a line and the rest go on."""
    code, done = EXIT_OK, []
    for job_id in ids:
        try:
            job = client.cancel(job_id)
        except ClientError as exc:
            if exc.status is None:
                raise
            if exc.status == 409 and quiet_if_finished:  # it ended since it was listed
                continue
            print(f"jobd: error: {exc.message} (HTTP {exc.status})", file=sys.stderr)
            code = EXIT_ERROR
            continue
        done.append(job)
        if not args.json:
            print(f"{job['ID']} {job['Status']}", flush=True)
    if args.json:
        _print_json(done if len(ids) > 1 or args.status else next(iter(done), None))
    return code, done


# ---------------------------------------------------------------------- helpers


def _tell_left_out(source: Path) -> Callable[[LeftOutList], None]:
    def tell(left: LeftOutList) -> None:
        named = ", ".join(f"{name} ({why})" for name, why in left[:_NAMED_LEFT_OUT])
        more = len(left) - _NAMED_LEFT_OUT
        named += f" and {more} more" if more > 0 else ""
        print(f"jobd: left out of the upload of {source}: {named}", file=sys.stderr)

    return tell


def _refuse_taken(out: Path) -> None:
    if _is_zip(out):
        if out.exists():
            raise ClientError(f"{out} already exists; choose another name for the zip")
    else:
        refuse_taken(out)


def _is_zip(out: Path) -> bool:
    return out.suffix.lower() == ".zip"


def _duration(text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def _jobs(count: int, kind: str = "") -> str:
    """`1 job`, `3 queued jobs`."""
    return f"{count} {kind + ' ' if kind else ''}job" + ("" if count == 1 else "s")


def _describe(job: Job) -> None:
    """The job object, one `Key: value` per line; empty fields left out."""
    width = max(len(key) for key in job)
    for key, value in job.items():
        if value not in (None, "", [], {}):
            shown = value if isinstance(value, str) else json.dumps(value)
            print(f"{key.ljust(width)}  {shown}")


def _print_json(answer: object) -> None:
    print(json.dumps(answer, indent=2))


def _env_item(item: str) -> tuple[str, str]:
    match = _ENV_ITEM.match(item)
    if match is None:
        raise ClientError(f"--env {item!r} is not NAME=VALUE (a name of letters, digits and _)")
    return match.group(1), match.group(2)


__all__ = ["EXIT_ERROR", "UsageError", "add_client_commands", "exit_code", "run_client_command"]
