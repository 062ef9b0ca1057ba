"""Private file modes for the data dir and the secrets in it, whatever the umask.

The data dir is 0700 (so workspaces inside it are private too); the database (and the -wal/-shm files
SQLite creates with the database file's own mode), the auth secret and the trace log are 0600. Modes
found too open (a data dir made before this rule) are tightened at start, with a log line."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("tollgate")
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
PRIVATE_NAMES = ("tollgate.db", "tollgate.db-wal", "tollgate.db-shm", "tollgate.db-journal", "auth_secret",
                 "trace.jsonl")


def _tighten(path: Path, allowed: int) -> str | None:
    """Drop the mode bits beyond `allowed`; a description of the change, or None when it was already private."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return None  # never follow a link someone put there; the file it names is not ours to change
    mode = stat.S_IMODE(st.st_mode)
    if mode & ~allowed:
        os.chmod(path, mode & allowed)
        return f"{path} {mode:04o} -> {mode & allowed:04o}"
    return None


def secure_data_dir(data_dir: Path) -> list[str]:
    """Create the data dir 0700, tighten it and its private files; returns (and logs) what was too open."""
    data_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    fixed = [_tighten(data_dir, PRIVATE_DIR)]
    fixed += [_tighten(data_dir / name, PRIVATE_FILE) for name in PRIVATE_NAMES if (data_dir / name).exists()]
    changed = [f for f in fixed if f]
    if changed:
        log.warning("tightened modes that were open to other users: %s", "; ".join(changed))
    return changed


def create_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist (SQLite then keeps that mode, and gives it to
    the -wal and -shm files it creates)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        return
    os.chmod(path, PRIVATE_FILE)  # the umask may have removed bits; it never adds any, but be explicit
