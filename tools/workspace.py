"""The per-user file sandbox every file tool goes through.

Safety does not rest on checking a path string and then opening it (that loses to a directory being
swapped for a symlink in between). Every operation walks the path one component at a time with
``os.open(..., dir_fd=parent, O_NOFOLLOW)``, so the kernel itself refuses a symlink at the moment of
use. The string checks in ``_parts`` only exist to give clear messages and to refuse ``..``/absolute
paths before touching the disk. Not covered: someone with shell access on the host renaming a
directory out of the workspace while we hold its descriptor.
"""

from __future__ import annotations

import codecs
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tools import quota
from tools.errors import ToolError
from tools.paths import path_parts

DEFAULT_MAX_READ_BYTES = 64 * 1024
DEFAULT_MAX_WRITE_BYTES = 256 * 1024
_TMP_PREFIX = ".tollgate-tmp-"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO someone left in the workspace must not hang the agent.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Entry:
    """One directory entry; ``path`` is relative to the workspace root."""

    name: str
    path: str
    kind: str  # "file", "dir", "symlink" or "other"
    size: int


@dataclass(frozen=True)
class ReadResult:
    text: str
    truncated: bool
    shown_bytes: int
    total_bytes: int


def _os_error(exc: OSError, rel: str) -> ToolError:
    messages = {
        errno.ENOENT: f"no such file: {rel}",
        errno.ELOOP: f"refusing to follow a symlink: {rel}",
        errno.EISDIR: f"is a directory: {rel}",
        errno.ENOTDIR: f"not a directory (or a symlink) in path: {rel}",
        errno.ENAMETOOLONG: f"path is too long: {rel}",
        errno.EACCES: f"permission denied: {rel}",
        errno.EPERM: f"permission denied: {rel}",
        errno.ENOSPC: "the workspace disk is full",
        errno.EEXIST: f"already exists: {rel}",
    }
    return ToolError(messages.get(exc.errno or 0, f"cannot access {rel}: {exc.strerror}"))


class Workspace:
    def __init__(
        self,
        root: Path,
        *,
        max_read_bytes: int = DEFAULT_MAX_READ_BYTES,
        max_write_bytes: int = DEFAULT_MAX_WRITE_BYTES,
        max_total_bytes: int | None = None,
        max_files: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_read_bytes = max_read_bytes
        self.max_write_bytes = max_write_bytes
        self.max_total_bytes = max_total_bytes  # the user's quota (None: none)
        self.max_files = max_files

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # -- path handling -------------------------------------------------------------------------

    def _parts(self, rel: object, *, allow_root: bool) -> list[str]:
        return path_parts(rel, allow_root=allow_root)

    def _open_root(self) -> int:
        # The root itself is configuration, not user input, so symlinks above it are fine.
        return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    @contextmanager
    def _dir_fd(self, dirs: list[str], rel: str, *, create: bool = False) -> Iterator[int]:
        """Yield an fd for root/dirs, walked component by component without following symlinks."""
        fd = self._open_root()
        try:
            for name in dirs:
                if create:
                    with suppress(FileExistsError):
                        os.mkdir(name, 0o755, dir_fd=fd)
                try:
                    next_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise self._walk_error(exc, fd, name, rel) from None
                os.close(fd)
                fd = next_fd
            yield fd
        finally:
            os.close(fd)

    @staticmethod
    def _walk_error(exc: OSError, dir_fd: int, name: str, rel: str) -> ToolError:
        # Linux reports a symlink opened with O_DIRECTORY|O_NOFOLLOW as ENOTDIR; look closer
        # only to word the message, the refusal itself already happened in the kernel.
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            try:
                if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    return ToolError(f"refusing to follow a symlink: {rel}")
            except OSError:
                pass
            return ToolError(f"not a directory: {name!r} in {rel}")
        return _os_error(exc, rel)

    # -- operations ----------------------------------------------------------------------------

    def read_capped(self, rel: str, max_bytes: int | None = None) -> ReadResult:
        limit = self.max_read_bytes if max_bytes is None else max_bytes
        parts = self._parts(rel, allow_root=False)
        with self._dir_fd(parts[:-1], rel) as dir_fd:
            try:
                fd = os.open(parts[-1], _READ_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                raise _os_error(exc, rel) from None
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise ToolError(f"is a directory: {rel}")
            if not stat.S_ISREG(st.st_mode):
                raise ToolError(f"not a regular file: {rel}")
            if st.st_nlink > 1:
                # A hard link could point at a file outside the workspace; tools never make them.
                raise ToolError(f"refusing to read a file with several hard links: {rel}")
            chunks: list[bytes] = []
            got = 0
            while got <= limit:
                chunk = os.read(fd, min(limit + 1 - got, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        except OSError as exc:
            raise _os_error(exc, rel) from None
        finally:
            os.close(fd)
        data = b"".join(chunks)
        truncated = len(data) > limit
        data = data[:limit]
        if b"\x00" in data:
            raise ToolError(f"not a text file (binary content): {rel}")
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # When cut mid-character, drop the partial tail instead of showing a replacement char.
        text = decoder.decode(data, final=not truncated)
        pending = len(decoder.getstate()[0])
        return ReadResult(text, truncated, len(data) - pending, max(st.st_size, len(data)))

    def read_text(self, rel: str, max_bytes: int | None = None) -> tuple[str, bool]:
        result = self.read_capped(rel, max_bytes)
        return result.text, result.truncated

    def write_text(self, rel: str, content: str) -> int:
        """Atomically create or replace a file; returns the number of bytes written."""
        try:
            data = content.encode("utf-8")
        except UnicodeEncodeError:
            raise ToolError("content is not valid text") from None
        if len(data) > self.max_write_bytes:
            raise ToolError(f"content is too large: {len(data)} bytes (limit {self.max_write_bytes})")
        parts = self._parts(rel, allow_root=False)
        name = parts[-1]
        if name.startswith(_TMP_PREFIX):
            raise ToolError(f"file names starting with {_TMP_PREFIX!r} are reserved")
        quota.check_write(self.root, new_bytes=len(data), replaced_bytes=self._file_size(parts, rel),
                          max_bytes=self.max_total_bytes, max_entries=self.max_files)
        with self._dir_fd(parts[:-1], rel, create=True) as dir_fd:
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise _os_error(exc, rel) from None
            else:
                if stat.S_ISLNK(st.st_mode):
                    raise ToolError(f"refusing to follow a symlink: {rel}")
                if stat.S_ISDIR(st.st_mode):
                    raise ToolError(f"is a directory: {rel}")
                if not stat.S_ISREG(st.st_mode):
                    raise ToolError(f"not a regular file: {rel}")
            tmp = _TMP_PREFIX + secrets.token_hex(8)
            try:
                fd = os.open(tmp, _TMP_FLAGS, 0o644, dir_fd=dir_fd)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                # rename() replaces the directory entry itself; it never writes through a symlink.
                os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except OSError as exc:
                with suppress(OSError):
                    os.unlink(tmp, dir_fd=dir_fd)
                raise _os_error(exc, rel) from None
        return len(data)

    def _file_size(self, parts: list[str], rel: str) -> int | None:
        """Size of the regular file a write would replace; None if there is none (nothing is created)."""
        try:
            with self._dir_fd(parts[:-1], rel) as dir_fd:
                st = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
        except (ToolError, OSError):
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def delete(self, rel: str) -> None:
        parts = self._parts(rel, allow_root=False)
        name = parts[-1]
        with self._dir_fd(parts[:-1], rel) as dir_fd:
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    raise ToolError(f"refusing to touch a symlink: {rel}")
                if stat.S_ISDIR(st.st_mode):
                    raise ToolError(f"is a directory (only files can be deleted): {rel}")
                # unlink() removes the entry in this directory and never follows a symlink.
                os.unlink(name, dir_fd=dir_fd)
            except OSError as exc:
                raise _os_error(exc, rel) from None

    def exists(self, rel: str) -> bool:
        parts = self._parts(rel, allow_root=True)
        if not parts:
            return True
        try:
            with self._dir_fd(parts[:-1], rel) as dir_fd:
                os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
        except (ToolError, OSError):
            return False
        return True

    def list_dir(self, rel: str = ".") -> list[Entry]:
        """Entries of a directory, sorted by name; symlinks are listed but never followed."""
        parts = self._parts(rel, allow_root=True)
        prefix = "/".join(parts)
        with self._dir_fd(parts, rel) as fd:
            return sorted(self._scan(fd, prefix), key=lambda e: e.name)

    @staticmethod
    def _scan(fd: int, prefix: str) -> list[Entry]:
        entries: list[Entry] = []
        with os.scandir(fd) as it:  # scandir duplicates the fd; ours is closed by the caller
            for de in it:
                if de.name.startswith(_TMP_PREFIX):
                    continue
                path = f"{prefix}/{de.name}" if prefix else de.name
                if de.is_symlink():
                    entries.append(Entry(de.name, path, "symlink", 0))
                elif de.is_dir(follow_symlinks=False):
                    entries.append(Entry(de.name, path, "dir", 0))
                elif de.is_file(follow_symlinks=False):
                    try:
                        size = de.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue  # removed since readdir
                    entries.append(Entry(de.name, path, "file", size))
                else:
                    entries.append(Entry(de.name, path, "other", 0))
        return entries

    def walk(self, *, max_files: int = 5000, max_depth: int = 32) -> list[str]:
        """Relative paths of regular files, depth first in name order; never enters symlinks."""
        found: list[str] = []
        root_fd = self._open_root()
        try:
            self._walk_into(root_fd, "", found, max_files, max_depth)
        finally:
            os.close(root_fd)
        return found

    def _walk_into(self, fd: int, prefix: str, found: list[str], max_files: int, depth: int) -> None:
        for entry in sorted(self._scan(fd, prefix), key=lambda e: e.name):
            if len(found) >= max_files:
                return
            if entry.kind == "file":
                found.append(entry.path)
            elif entry.kind == "dir" and depth > 0:
                try:
                    sub = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue  # swapped for a symlink or removed since the scan: skip it
                try:
                    self._walk_into(sub, entry.path, found, max_files, depth - 1)
                finally:
                    os.close(sub)
