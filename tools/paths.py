"""How a workspace path is spelled: the one normalisation every file operation and the approval policy use.

A rule (agent/policy.py) and the file a tool would touch can never disagree about spelling, because both
resolve a path through `path_parts` here. Refused spellings (absolute, "..", backslashes, control
characters, NUL, over-long) raise ToolError with a message the model can act on.
"""

from __future__ import annotations

import os

from tools.errors import ToolError

MAX_PATH_BYTES = 1024
MAX_COMPONENT_BYTES = 255


def path_parts(rel: object, *, allow_root: bool = False) -> list[str]:
    """The components of a workspace path, exactly as every operation resolves it; ToolError if refused.

    Also the one normalisation the approval policy matches on (agent/policy.py), so a rule and the
    file a tool would touch can never disagree about spelling.
    """
    if not isinstance(rel, str):
        raise ToolError("path must be a string")
    if rel == "":
        raise ToolError("path is empty")
    if "\x00" in rel:
        raise ToolError("path contains a NUL byte")
    if "\\" in rel:
        raise ToolError("path must use '/' as separator, not backslashes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in rel):
        raise ToolError("path contains control characters")
    if rel.startswith("/"):
        raise ToolError(f"path must be relative to your workspace, not absolute: {rel}")
    try:
        encoded = os.fsencode(rel)
    except UnicodeEncodeError:
        raise ToolError("path is not valid text") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise ToolError(f"path is too long (limit {MAX_PATH_BYTES} bytes)")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    # Any "..", even one that would stay inside: with no symlinks allowed it is never needed.
    if ".." in parts:
        raise ToolError(f"path must not contain '..': {rel}")
    if any(len(os.fsencode(p)) > MAX_COMPONENT_BYTES for p in parts):
        raise ToolError(f"a path component is too long (limit {MAX_COMPONENT_BYTES} bytes)")
    if not parts and not allow_root:
        raise ToolError("path must name a file, not the workspace root")
    return parts


def normalise_path(rel: object) -> str:
    """The canonical spelling of a file path (``./notes//a/`` -> ``notes/a``); ToolError if refused."""
    return "/".join(path_parts(rel, allow_root=False))
