"""What a person sees of the client commands: an upload bar and a live status line (on
stderr, drawn by rich only when stderr is a terminal) and job tables (rich on a terminal,
plain aligned text through a pipe). rich is imported only when it draws, so `jobd --version`
and scripts start without it."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone

from jobd.client.api import Job, Progress
from jobd.models import span

#: Uploads smaller than this are over before a bar would be worth drawing.
BAR_ABOVE = 4 << 20
COLUMNS = (
    "ID",
    "INTID",
    "STATUS",
    "ATTEMPT",
    "USER",
    "SERVICE",
    "AGE",
    "DURATION",
    "EXIT",
)

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
    """A table of jobs, newest first as given: ID, the integer ID `--before` takes, status,
    attempt (and when a queued retry is due), user, service, age, duration, exit code."""
    now = datetime.now(timezone.utc)
    rows = [
        (
            str(job.get("ID")),
            str(job.get("IntID", "-")),
            str(job.get("Status")),
            _attempt(job, now),
            "-" if job.get("UserID") is None else str(job["UserID"]),
            str(job.get("Service") or "-"),
            _age(job.get("CreatedAt"), now),
            _ran(job, now),
            "-" if job.get("ExitCode") is None else str(job["ExitCode"]),
        )
        for job in jobs
    ]
    print_table(COLUMNS, rows, status_column=2)


def print_table(
    columns: tuple[str, ...], rows: Sequence[tuple[str, ...]], status_column: int
) -> None:
    """Aligned plain text through a pipe; rich's table, its statuses coloured, on a terminal."""
    if not _drawing(sys.stdout):
        widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns))]
        for row in [columns, *rows]:
            line = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
            print(line.rstrip())
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(*columns, box=None, header_style="bold", pad_edge=False)
    for row in rows:
        cells = [escape(cell) for cell in row]
        state = row[status_column]
        cells[status_column] = f"[{_COLOURS.get(state, 'white')}]{escape(state)}[/]"
        table.add_row(*cells)
    Console().print(table)


def ask(question: str) -> bool:
    """A y/N question on the terminal (stdin and stderr); off a terminal, the answer is yes:
    a script said what it wanted by running the command."""
    if not (sys.stdin.isatty() and _drawing(sys.stderr)):
        return True
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def _attempt(job: Job, now: datetime) -> str:
    """`2/3`, and for a queued retry when it is due (`2/3 in 4.0 s`); `-` for one attempt."""
    attempt, most = job.get("Attempt"), job.get("MaxAttempts")
    if not isinstance(most, int) or most <= 1:
        return "-"
    shown = f"{attempt}/{most}"
    when = _when(job.get("NextAttemptAt")) if job.get("Status") == "QUEUED" else None
    if when is not None:
        shown += f" in {span(max(0.0, (when - now).total_seconds()))}"
    return shown


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
