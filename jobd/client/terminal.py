"""What a person sees of the client commands: an upload bar and a live status line (on
stderr, drawn by rich only when stderr is a terminal) and job tables (rich on a terminal,
plain aligned text through a pipe). rich is imported only when it draws, so `jobd --version`
and scripts start without it."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

from jobd.client.api import Job, Progress
from jobd.models import span

#: Uploads smaller than this are over before a bar would be worth drawing.
BAR_ABOVE = 4 << 20
COLUMNS = ("ID", "STATUS", "AGE", "DURATION", "EXIT")
_COLOURS = {
    "SUCCESS": "green",
    "FAILED": "red",
    "CANCELLED": "yellow",
    "RUNNING": "cyan",
    "QUEUED": "blue",
    "SKIPPED": "dim",
}


def _drawing(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


@contextlib.contextmanager
def upload_bar() -> Iterator[Progress | None]:
    """A progress bar for an upload, drawn from its first report on, if it is a big one (a
    folder's size is known only once it is zipped)."""
    if not _drawing(sys.stderr):
        yield None
        return
    with contextlib.ExitStack() as drawn:
        update: Progress | None = None

        def report(sent: int, total: int) -> None:
            nonlocal update
            if update is None and total >= BAR_ABOVE:
                update = drawn.enter_context(_bar(total))
            if update is not None:
                update(sent, total)

        yield report


@contextlib.contextmanager
def _bar(total: int) -> Iterator[Progress]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as Bar

    columns = (
        TextColumn("uploading"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Bar(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("upload", total=total)
        yield lambda sent, _total: bar.update(task, completed=sent)


@contextlib.contextmanager
def status_line() -> Iterator[Callable[[Job], None] | None]:
    """A live line while a job is waited for (`demo-2  RUNNING  12 s`); None off a terminal."""
    if not _drawing(sys.stderr):
        yield None
        return
    from rich.console import Console

    start = time.monotonic()
    with Console(stderr=True).status("submitted") as status:

        def show(job: Job) -> None:
            state = str(job.get("Status"))
            colour = _COLOURS.get(state, "white")
            elapsed = span(time.monotonic() - start)
            status.update(f"{job.get('ID')}  [{colour}]{state}[/]  {elapsed}")

        yield show


def print_jobs(jobs: list[Job]) -> None:
    """A table of jobs, newest first as given: ID, status, age, duration, exit code."""
    now = datetime.now(timezone.utc)
    rows = [
        (
            str(job.get("ID")),
            str(job.get("Status")),
            _age(job.get("CreatedAt"), now),
            _ran(job, now),
            "-" if job.get("ExitCode") is None else str(job["ExitCode"]),
        )
        for job in jobs
    ]
    if not _drawing(sys.stdout):
        widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
        for row in [COLUMNS, *rows]:
            print(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*COLUMNS, box=None, header_style="bold", pad_edge=False)
    for row in rows:
        table.add_row(row[0], f"[{_COLOURS.get(row[1], 'white')}]{row[1]}[/]", *row[2:])
    Console().print(table)


def _when(stamp: object) -> datetime | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def _age(stamp: object, now: datetime) -> str:
    created = _when(stamp)
    return "-" if created is None else f"{span((now - created).total_seconds())} ago"


def _ran(job: Job, now: datetime) -> str:
    started, finished = _when(job.get("StartedAt")), _when(job.get("FinishedAt"))
    if started is None:
        return "-"
    return span(((finished or now) - started).total_seconds())
