"""The client's profile file: the daemon's URL and token, so a shell need not export them.

`$XDG_CONFIG_HOME/jobd/config.toml` (default `~/.config/jobd/config.toml`), TOML:

    url = "http://head:8080"
    token = "..."

A flag wins over the environment, which wins over the file."""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

from jobd.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the tomli package is tomllib before 3.11
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

#: The settings a profile may hold; anything else is a mistake worth saying.
KEYS = ("url", "token")


def profile_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(environ.get("HOME") or "~", ".config")
    return Path(base).expanduser() / "jobd" / "config.toml"


def read_profile(path: Path) -> tuple[dict[str, str], str | None]:
    """The file's settings (none if it does not exist) and a warning to show, if any; a file
    that cannot be read or is not what it should be is a ConfigError naming it and the line."""
    try:
        with open(path, "rb") as file:
            text = file.read()
            mode = os.fstat(file.fileno()).st_mode
    except FileNotFoundError:
        return {}, None
    except PermissionError:
        if not _visible(path):  # a home that is not ours to enter (sudo, setpriv): no profile
            return {}, None
        raise ConfigError(f"cannot read the profile {path}: permission denied") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the profile {path}: {exc.strerror}") from None
    try:
        values = tomllib.loads(text.decode())
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not text (UTF-8); it should hold url and token") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not TOML: {_where(str(exc))}") from None
    for key, value in values.items():
        if key not in KEYS:
            line = _line_of(text.decode(), key)
            raise ConfigError(
                f"{path} line {line}: unknown setting {key!r}; a profile holds {', '.join(KEYS)}"
            )
        if not isinstance(value, str) or not value:
            line = _line_of(text.decode(), key)
            raise ConfigError(f"{path} line {line}: {key} must be a non-empty string in quotes")
    warning = None
    if "token" in values and mode & (stat.S_IRWXG | stat.S_IRWXO):
        warning = f"{path} holds a token and others can read it; run: chmod 600 {path}"
    return values, warning


def _visible(path: Path) -> bool:
    try:
        path.stat()
    except OSError:
        return False
    return True


def _where(message: str) -> str:
    """tomllib's message, with its `(at line N, column M)` kept as the place to look."""
    return message[:1].lower() + message[1:]


def _line_of(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
            return number
    return 1
