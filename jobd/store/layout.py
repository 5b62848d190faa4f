"""Where things live in the data dir, and the lock that keeps it to one daemon."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from jobd.errors import DataDirBusy, DataDirUnusable
from jobd.models import valid_job_id


class Layout:
    """`jobs/<id>/` holds `input.zip` (the kept copy), `work/` (run.sh's directory), `result.zip`.

    `tmp/` stages uploads until they are accepted, so a rejected one leaves nothing behind.
    `scratch/` holds each running job's TMPDIR.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()  # paths go to sbatch and to other processes' working dirs
        self.jobs = self.root / "jobs"
        self.tmp = self.root / "tmp"
        self.scratch = self.root / "scratch"
        self.db = self.root / "jobd.db"
        self._lock_fd: int | None = None
        self._made_lock_file = False

    def prepare(self) -> None:
        try:
            for folder in (self.root, self.jobs):
                folder.mkdir(parents=True, exist_ok=True)
            for fresh in (self.tmp, self.scratch):
                shutil.rmtree(fresh, ignore_errors=True)
                fresh.mkdir()
        except OSError as exc:
            raise self._unusable(exc) from None

    def seal(self, traversable: bool) -> list[Path]:
        """Only jobd reads the data dir: the store, the lock, every job's folder. Job users
        may pass through the folders above theirs (`traversable`), never list them; returns
        the folders above the data dir that they cannot pass."""
        passage = 0o711 if traversable else 0o700
        try:
            for folder in (self.root, self.jobs, self.scratch):
                os.chmod(folder, passage)
            for entry in self.root.iterdir():
                if entry.name not in ("jobs", "scratch") and not entry.is_symlink():
                    os.chmod(entry, 0o700 if entry.is_dir() else 0o600)
            for job in self.jobs.iterdir():
                os.chmod(job, 0o700)
        except OSError as exc:
            raise self._unusable(exc) from None
        above = self.root.resolve().parents
        return [folder for folder in above if traversable and not folder.stat().st_mode & 0o001]

    def lock(self) -> None:
        """Hold an exclusive lock on the data dir for the life of the process."""
        lock_file = self.root / "jobd.lock"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._made_lock_file = not lock_file.exists()
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise self._unusable(exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirBusy(
                f"another jobd (pid {holder}) is using the data dir {self.root.resolve()};"
                " stop it or give this one another --data-dir"
            ) from None
        self._lock_fd = fd

    def claim(self) -> None:
        """The data dir is usable: say in the lock file which process holds it."""
        assert self._lock_fd is not None
        os.ftruncate(self._lock_fd, 0)
        os.write(self._lock_fd, f"{os.getpid()}\n".encode())

    def unlock(self) -> None:
        """A start that failed leaves the data dir as it found it."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._made_lock_file:
            (self.root / "jobd.lock").unlink(missing_ok=True)

    def _unusable(self, exc: OSError) -> DataDirUnusable:
        where = exc.filename or self.root
        if exc.errno in (errno.ENOTDIR, errno.EEXIST):
            advice = "a part of that path is a file, not a folder"
        elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            advice = "jobd must be able to write there"
        else:
            advice = "jobd cannot use it"
        return DataDirUnusable(
            f"the data dir {self.root} cannot be used: {where}: {exc.strerror} ({advice});"
            " fix that or point --data-dir at a writable folder"
        )

    def job_dir(self, job_id: str) -> Path:
        if not valid_job_id(job_id):  # the one gate between a client's ID and the filesystem
            raise ValueError(f"not a job ID: {job_id!r}")
        return self.jobs / job_id

    def work_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "work"

    def schedule_zip(self, name: str) -> Path:
        """A schedule's input, kept once for all its runs (names are checked by schedules)."""
        return self.root / "schedules" / f"{name}.zip"

    def attempts_dir(self, job_id: str) -> Path:
        """Earlier attempts' output, kept beside the folder each attempt starts afresh."""
        return self.job_dir(job_id) / "attempts"

    def restore_attempts(self, job_id: str) -> None:
        """Earlier attempts' output into the job's folder, so it reaches the result."""
        kept, workdir = self.attempts_dir(job_id), self.work_dir(job_id)
        for earlier in sorted(kept.iterdir()) if kept.is_dir() else ():
            shutil.copyfile(earlier, workdir / earlier.name)

    def input_zip(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "input.zip"

    def result_zip(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "result.zip"

    def staging(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.tmp))

    def remove_orphans(self, live: set[str]) -> None:
        """Remove job folders with no record: accepted on disk but never recorded, or expired."""
        for entry in self.jobs.iterdir():
            if entry.name not in live:
                shutil.rmtree(entry, ignore_errors=True)

    def remove_job(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
