"""Where the default store lives, and how a path or URL becomes a database URL.

The default store is one SQLite file. Its location, first match wins:

1. the `JIB_STORE` environment variable: a database URL (`sqlite:///…`,
   `postgresql+psycopg://…`) or a plain file path;
2. `$XDG_DATA_HOME/jib/jib.db` when `XDG_DATA_HOME` is set;
3. the platform's per-user data folder: `~/.local/share/jib/jib.db` on Linux and other Unixes,
   `~/Library/Application Support/jib/jib.db` on macOS, `%LOCALAPPDATA%\\jib\\jib.db` on Windows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["STORE_ENV_VAR", "default_store_path", "default_store_url", "to_database_url"]

STORE_ENV_VAR = "JIB_STORE"


def default_store_path() -> Path:
    """The SQLite file used when neither a URL nor `JIB_STORE` is given (see module docs)."""
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg:
        base = Path(xdg)
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path.home() / ".local" / "share"
    return base / "jib" / "jib.db"


def default_store_url() -> str:
    """`$JIB_STORE` as a database URL, or the URL of `default_store_path()`."""
    configured = os.environ.get(STORE_ENV_VAR, "").strip()
    if configured:
        return to_database_url(configured)
    return to_database_url(str(default_store_path()))


def to_database_url(location: str) -> str:
    """A database URL for `location`: URLs pass through, anything else is a SQLite file path.

    `postgresql://` and `postgres://` URLs are given the psycopg (version 3) driver.

    >>> to_database_url("postgresql://db.example/jib")
    'postgresql+psycopg://db.example/jib'
    """
    if "://" in location:
        scheme, rest = location.split("://", 1)
        if scheme in ("postgresql", "postgres"):
            return f"postgresql+psycopg://{rest}"
        return location
    path = Path(location).expanduser().resolve()
    return f"sqlite:///{path.as_posix()}"
