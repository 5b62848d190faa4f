"""Zips in and out: streaming base64, safe extraction, and the result zip of a job directory."""

from __future__ import annotations

import base64
import binascii
import lzma
import os
import posixpath
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from jobd.errors import BadRequest, TooLarge, is_full

CHUNK = 1 << 20
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_WHITESPACE = b" \t\r\n"
#: Files whose first 64 KiB deflate to more than this share of their size are stored as is.
_STORE_ABOVE_RATIO = 0.9
#: Files this small are stored: deflating saves next to nothing and costs a compressor each.
_STORE_BELOW = 1024
#: A result's files up to this size are read whole and written to its zip in one piece.
_READ_WHOLE = 1 << 16
#: Read size for base64 output: a multiple of 3, so the pieces concatenate without padding.
_ENCODE_BLOCK = 3 * (1 << 16)
#: Told what an upload's zip leaves out: its name in the zip, and why.
LeftOut = Callable[[str, str], None]
#: A zip with no entries: what a job whose result could not be stored answers with.
EMPTY_ZIP = b"PK\x05\x06" + bytes(18)


@dataclass(frozen=True)
class Limits:
    max_unpacked: int
    max_files: int


class Base64Writer:
    """Decodes base64 written in arbitrary pieces to a binary file, checking every character.

    Accepts input with or without `=` padding; whitespace is ignored.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._pending = b""
        self._padding = 0
        self.decoded = 0

    def write(self, data: bytes) -> None:
        data = data.translate(None, _WHITESPACE)
        if not data:
            return
        if self._padding or b"=" in data:
            self._write_padding(data)
            return
        if data.translate(None, _B64_ALPHABET):
            raise self._invalid(data)
        data = self._pending + data
        cut = len(data) - len(data) % 4
        self._pending = data[cut:]
        self._emit(data[:cut])

    def close(self) -> None:
        """Decode what is left, padding it if the sender left `=` out."""
        data = self._pending
        if len(data) % 4 == 1:
            raise BadRequest("'input' is not valid base64: its length is impossible (truncated?)")
        self._emit(data + b"=" * (-len(data) % 4))
        self._pending = b""

    def _write_padding(self, data: bytes) -> None:
        head, _, tail = data.partition(b"=")
        if self._padding and head:
            raise BadRequest("'input' is not valid base64: data continues after '=' padding")
        if head:
            self.write(head)
        self._padding += 1 + len(tail)
        if tail.strip(b"=") or self._padding > 2:
            raise BadRequest("'input' is not valid base64: misplaced '=' padding")
        if (len(self._pending) + self._padding) % 4 != 0 and self._padding == 2:
            raise BadRequest("'input' is not valid base64: misplaced '=' padding")

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        try:
            decoded = binascii.a2b_base64(data)
        except binascii.Error as exc:
            raise BadRequest(f"'input' is not valid base64: {exc}") from None
        self.decoded += len(decoded)
        self._out.write(decoded)

    @staticmethod
    def _invalid(data: bytes) -> BadRequest:
        bad = data.translate(None, _B64_ALPHABET)[:1]
        return BadRequest(
            f"'input' is not valid base64: it contains the character {bad.decode('latin-1')!r}"
        )


def base64_length(size: int) -> int:
    return 4 * ((size + 2) // 3)


def base64_chunks_of(source: BinaryIO) -> Iterator[bytes]:
    """Base64 of a file in pieces that concatenate to the whole (each a multiple of 3 bytes in)."""
    while block := source.read(_ENCODE_BLOCK):
        yield base64.b64encode(block)


def path_problem(name: str) -> str | None:
    """What makes a name from a client unusable as a path inside a job; None if it is fine."""
    if not name.strip("/"):
        return "is empty"
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if ".." in parts:
        return "climbs out of the job directory with '..'"
    if "\x00" in name:
        return "contains a NUL byte"
    return None


def _entry_kind(info: zipfile.ZipInfo) -> str | None:
    """Names a link or special file; None for regular files and directories."""
    mode = info.external_attr >> 16
    if info.create_system != 3 or not mode:  # only Unix zips carry a file type
        return None
    kinds = {
        stat.S_IFLNK: "a symbolic link",
        stat.S_IFCHR: "a character device",
        stat.S_IFBLK: "a block device",
        stat.S_IFIFO: "a named pipe",
        stat.S_IFSOCK: "a socket",
    }
    return kinds.get(stat.S_IFMT(mode))


def _normal_name(info: zipfile.ZipInfo) -> str:
    name = info.filename.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def check_zip(archive: zipfile.ZipFile, limits: Limits, job: bool = True) -> list[zipfile.ZipInfo]:
    """Check every entry against the limits and path rules before anything is written; a
    `job`'s zip must also hold run.sh (a result need not: its run.sh may have removed itself)."""
    entries = archive.infolist()
    if len(entries) > limits.max_files:
        raise TooLarge(
            f"the zip has {len(entries)} entries; this jobd accepts at most {limits.max_files}"
        )
    declared = 0
    seen: set[str] = set()
    for info in entries:
        name = _normal_name(info)
        reason = path_problem(info.filename)
        if reason:
            raise BadRequest(
                f"zip entry {info.filename!r} {reason}; paths must stay inside the job"
            )
        kind = _entry_kind(info)
        if kind:
            raise BadRequest(f"zip entry {info.filename!r} is {kind}; only files and folders")
        if info.flag_bits & 0x1:
            raise BadRequest(f"zip entry {info.filename!r} is encrypted; send it unencrypted")
        if name.rstrip("/") in seen:
            raise BadRequest(f"the zip holds {name!r} twice")
        seen.add(name.rstrip("/"))
        declared += info.file_size
    if declared > limits.max_unpacked:
        raise TooLarge(
            f"the zip unpacks to {declared} bytes; this jobd accepts at most {limits.max_unpacked}"
        )
    if job and not any(_normal_name(info) == "run.sh" for info in entries):
        raise BadRequest("the zip has no run.sh at its root; put run.sh next to the inputs")
    return entries


def extract(
    zip_path: Path, dest: Path, limits: Limits, what: str = "'input'", job: bool = True
) -> None:
    """Unpack a zip (`what`, for messages) into `dest`, counting the bytes really written
    (headers can lie); `job`: it must hold run.sh."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            entries = check_zip(archive, limits, job)
            written = 0
            for info in entries:
                written = _extract_one(archive, info, dest, written, limits.max_unpacked)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise BadRequest(f"{what} is not a valid zip: {exc}") from None
    except NotImplementedError as exc:
        raise BadRequest(f"the zip uses a feature jobd cannot read: {exc}") from None
    except UnicodeDecodeError:
        raise BadRequest("a zip entry's name is marked as UTF-8 but is not UTF-8") from None
    except (zlib.error, lzma.LZMAError) as exc:
        raise BadRequest(f"the zip holds a corrupt compressed entry: {exc}") from None
    except OSError as exc:
        if is_full(exc):
            raise  # the server's disk, not the zip: the caller answers 507
        where = Path(exc.filename).relative_to(dest) if exc.filename else "an entry"
        what = exc.strerror or f"its data is corrupt ({exc})"
        raise BadRequest(f"the zip cannot be unpacked: {what} at {where}") from None


def _extract_one(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, written: int, budget: int
) -> int:
    target = dest / _normal_name(info)
    if info.is_dir() or info.filename.endswith("\\"):
        target.mkdir(parents=True, exist_ok=True)
        return written
    target.parent.mkdir(parents=True, exist_ok=True)
    executable = (info.external_attr >> 16) & 0o111 or target == dest / "run.sh"
    mode = 0o755 if executable else 0o644
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as out, archive.open(info) as source:
        while block := source.read(CHUNK):
            written += len(block)
            if written > budget:
                raise TooLarge(
                    f"the zip unpacks to more than {budget} bytes (its headers understate it);"
                    f" this jobd accepts at most {budget}"
                )
            out.write(block)
    return written


def write_files(parts: list[tuple[str, BinaryIO]], dest: Path, limits: Limits) -> None:
    """Store named streams under `dest` with the same path rules and limits as a zip's entries."""
    if len(parts) > limits.max_files:
        raise TooLarge(f"{len(parts)} files; this jobd accepts at most {limits.max_files}")
    for name, _ in parts:
        reason = path_problem(name)
        if reason:
            raise BadRequest(f"the file name {name!r} {reason}; paths must stay inside the job")
    if "run.sh" not in {posixpath.normpath(name) for name, _ in parts}:
        raise BadRequest("no run.sh among the files; send run.sh next to the inputs")
    written = 0
    for name, stream in parts:
        target = dest / name
        mode = 0o755 if target == dest / "run.sh" else 0o644
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            with os.fdopen(fd, "wb") as out:
                while block := stream.read(CHUNK):
                    written += len(block)
                    if written > limits.max_unpacked:
                        raise TooLarge(f"the files hold more than {limits.max_unpacked} bytes")
                    out.write(block)
        except FileExistsError:
            raise BadRequest(
                f"the file {name!r} is sent twice, or clashes with a folder of that name"
            ) from None
        except OSError as exc:
            if is_full(exc):
                raise
            raise BadRequest(
                f"the file {name!r} cannot be stored: {exc.strerror or exc}"
                " (is a folder on its path also sent as a file?)"
            ) from None


def zip_directory(root: Path, dest: Path, left_out: LeftOut | None = None) -> None:
    """Zip every file under `root`, rooted at it; links count only if they stay inside.

    Written in place: a result is read only once its job is finished, after this returned.
    With `left_out` (the client's upload), what is not taken is told to it by its name in the
    zip and why, and an unreadable file or folder is left out instead of failing the zip.
    """
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, True, compresslevel=1) as archive:
        for path, arcname in _files_under(str(root), "", str(root), left_out):
            if arcname.endswith("/"):
                archive.writestr(arcname, b"")
                continue
            info = zipfile.ZipInfo.from_file(path, arcname)
            data = _small_contents(path) if info.file_size <= _READ_WHOLE else None
            if data is not None:  # most of a result: one read and one write each
                archive.writestr(info, data, _compression_of(data))
            else:
                archive.write(path, arcname, _compression(path))


def _files_under(
    folder: str, prefix: str, root: str, left_out: LeftOut | None
) -> Iterator[tuple[str, str]]:
    """(path, name in the zip) of regular files, in-tree links to files, and empty folders."""
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except PermissionError:
        if left_out is None:
            raise
        left_out(prefix, "a folder that cannot be read")
        return
    if not entries and prefix:
        yield folder, prefix
    for entry in entries:
        name = prefix + entry.name
        if entry.is_dir(follow_symlinks=False):
            yield from _files_under(entry.path, name + "/", root, left_out)
        elif entry.is_file(follow_symlinks=False):
            if left_out is not None and not os.access(entry.path, os.R_OK):
                left_out(name, "a file that cannot be read")
            else:
                yield entry.path, name
        elif entry.is_symlink():
            real, top = os.path.realpath(entry.path), os.path.realpath(root)
            inside = real == top or real.startswith(top + os.sep)
            if inside and os.path.isfile(real):
                yield real, name
            elif left_out is not None:
                left_out(name, _why_not(entry.path, real, inside))
        elif left_out is not None:
            left_out(name, "not a file, folder or link")


def _why_not(path: str, real: str, inside: bool) -> str:
    """Why a link is not zipped, in words."""
    if not inside:
        return f"a link to {os.readlink(path)}, outside the folder"
    if not os.path.exists(real):
        return "a link to nothing"
    return "a link to a folder" if os.path.isdir(real) else "a link to something not a file"


def _small_contents(path: str) -> bytes | None:
    """The file's bytes, if it holds at most _READ_WHOLE: a running job's file may grow."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _READ_WHOLE + 1)
    finally:
        os.close(fd)
    return data if len(data) <= _READ_WHOLE else None


def _compression(path: str) -> int:
    """Deflate what shrinks; store what does not (compressed data, random bytes) or is tiny."""
    with open(path, "rb") as data:
        return _compression_of(data.read(1 << 16))


def _compression_of(head: bytes) -> int:
    if len(head) <= _STORE_BELOW:
        return zipfile.ZIP_STORED
    if len(zlib.compress(head, 1)) < _STORE_ABOVE_RATIO * len(head):
        return zipfile.ZIP_DEFLATED
    return zipfile.ZIP_STORED
