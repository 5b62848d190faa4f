"""`--user-tokens FILE`: the users' bearer tokens, one `USER_ID TOKEN` a line, read at start.

A bad file stops the start with one line naming the file, the line and what is wrong; no
message ever quotes a token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: The largest user_id the store (SQLite) holds, as on /upload.
_MAX_USER_ID = 2**63 - 1


@dataclass(frozen=True)
class UserTokens:
    """Each user's token, as (user_id, token) pairs; a user may have several tokens."""

    path: Path
    entries: tuple[tuple[int, str], ...] = field(repr=False)  # secrets: never in a repr
    lines: tuple[int, ...] = ()  # the file's line of each entry, for messages


def read_user_tokens(text: str) -> UserTokens:
    """The file named by `text`, checked whole; a ValueError saying where it is wrong."""
    path = Path(text)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"cannot read {text!r}: {reason}") from None
    entries: list[tuple[int, str]] = []
    numbers: list[int] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        where = f"{text!r} line {number}"
        if len(fields) != 2:
            raise ValueError(f"{where}: expected two fields, USER_ID TOKEN, found {len(fields)}")
        user, token = fields
        if not (user.isascii() and user.isdigit()) or int(user) > _MAX_USER_ID:
            raise ValueError(f"{where}: the user ID must be a whole number from 0 up, not {user!r}")
        if not all("!" <= char <= "~" for char in token):
            raise ValueError(
                f"{where}: the token has a character an HTTP header cannot carry"
                " (use printable ASCII)"
            )
        if token in seen:
            raise ValueError(f"{where}: the same token as line {seen[token]}; each must differ")
        seen[token] = number
        entries.append((int(user), token))
        numbers.append(number)
    if not entries:
        raise ValueError(f"{text!r} holds no 'USER_ID TOKEN' line")
    return UserTokens(path, tuple(entries), tuple(numbers))
