"""A user's workspace quota: total bytes and number of entries (files and folders), checked before a write."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from tools.errors import ToolError


@dataclass(frozen=True)
class Usage:
    bytes: int
    entries: int  # files and folders (a folder costs an entry too: paths can make many)


def usage(root: Path) -> Usage:
    """What the workspace holds now. Never follows a symlink (os.walk does not, lstat does not)."""
    total = entries = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        entries += len(dirnames) + len(filenames)
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue  # removed since the listing
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return Usage(total, entries)


def check_write(root: Path, *, new_bytes: int, replaced_bytes: int | None, max_bytes: int | None,
                max_entries: int | None) -> None:
    """ToolError, before anything is written, if writing `new_bytes` (replacing a file of `replaced_bytes`,
    None for a new file) would take the workspace over its quota. The tools run one at a time on the event
    loop, so check-then-write cannot interleave with another write of this process."""
    if max_bytes is None and max_entries is None:
        return
    now = usage(root)
    after_bytes = now.bytes - (replaced_bytes or 0) + new_bytes
    if max_bytes is not None and after_bytes > max_bytes:
        raise ToolError(f"over the workspace quota: this write would bring the user's files to {after_bytes:,} "
                        f"bytes (limit {max_bytes:,}); nothing was written. Ask the user to delete files first.")
    if max_entries is not None and replaced_bytes is None and now.entries + 1 > max_entries:
        raise ToolError(f"over the workspace quota: the workspace already holds {now.entries:,} files and folders "
                        f"(limit {max_entries:,}); nothing was written. Ask the user to delete files first.")
