"""How full the data dir's disk is. New jobs are refused (507) once free space falls to the
reserve, so the jobs already running can still store their results; a write that finds the
disk full is a 507 too, never a client's fault.

A run.sh can still fill the disk to the last byte, and then the store could not record that
its job ended. So jobd keeps a small ballast file in the data dir: given back when the store
finds the disk full, made again once there is room."""

from __future__ import annotations

import os
from pathlib import Path

from jobd.config.units import Reserve
from jobd.errors import InsufficientStorage

#: Room kept for the store's own writes: many state changes' worth of WAL pages.
BALLAST_SIZE = 1024 * 1024


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


class Disk:
    def __init__(self, path: Path, reserve: Reserve) -> None:
        self._path = path
        self._reserve = reserve
        self._ballast = path / "jobd.ballast"

    def keep_ballast(self) -> None:
        """Make the ballast file if it is missing and it fits above the reserve."""
        if self._ballast.exists():
            return
        free, total = self.usage()
        if free - BALLAST_SIZE < self._reserve.of(total):
            return
        part = self._ballast.with_name(self._ballast.name + ".part")
        try:
            with open(part, "wb") as ballast:
                os.posix_fallocate(ballast.fileno(), 0, BALLAST_SIZE)
            os.replace(part, self._ballast)
        except OSError:
            part.unlink(missing_ok=True)

    def release_ballast(self) -> bool:
        """Give the ballast's room back for the store; whether there was any to give."""
        try:
            self._ballast.unlink()
        except FileNotFoundError:
            return False
        return True

    def usage(self) -> tuple[int, int]:
        """Bytes free (for jobd, not root's share) and the volume's size."""
        stat = os.statvfs(self._path)
        return stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize

    def free(self) -> float:
        return float(self.usage()[0])

    def report(self) -> dict[str, object]:
        free, total = self.usage()
        reserved = self._reserve.of(total)
        return {"free": free, "total": total, "min_free": reserved, "low": free < reserved}

    def check_room(self) -> None:
        """Refuse new work once free space is at the reserve."""
        self.keep_ballast()
        free, total = self.usage()
        reserved = self._reserve.of(total)
        if free < reserved:
            raise InsufficientStorage(
                f"the data dir's disk has {megabytes(free)} free, less than the"
                f" {megabytes(reserved)} jobd keeps for running jobs (--min-free); free some"
                " space or shorten --retention, then send the job again"
            )

    def full(self) -> InsufficientStorage:
        free, _ = self.usage()
        return InsufficientStorage(
            f"the data dir's disk is full ({megabytes(free)} free) and the job could not be"
            " stored; free some space or shorten --retention, then send the job again"
        )
