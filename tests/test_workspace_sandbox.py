"""The workspace sandbox: a path corpus run against read, write, delete and list, plus symlink races.

Canary files sit outside the workspace at every ancestor level and in a sibling user's directory.
An "escape" is any canary content returned, any byte/mtime change, deletion or new file outside the
workspace. Each case must leave zero escapes; "refuse" cases must also raise ToolError.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools.errors import ToolError
from tools.workspace import Workspace

SECRET = "CANARY-SECRET"
OPS = ("read", "write", "delete", "list")
# Fixed, not "until it looks raced". Writes fsync, so they are a smaller share of the mix.
RACE_ITERATIONS = 3000
RACE_OPS = ("read", "list", "read", "list", "read", "list", "write", "delete")
# Names that only exist outside the workspace (or in /, /etc): seeing one in a listing is an escape.
OUTSIDE_NAMES = frozenset(
    {"outside_only_marker", "passwd", "etc", "proc", "bob", "ws", "outside_dir", "canary_dir.txt"}
    | {f"canary_L{i}.txt" for i in range(4)}
)


@dataclass
class Layout:
    top: Path
    ws: Path
    outside_dir: Path
    canaries: dict[str, Path]


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    # tmp/canary_L0.txt, tmp/a/canary_L1.txt, ..., tmp/a/b/c/ws is the workspace.
    level_dirs = [tmp_path, tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"]
    canaries: dict[str, Path] = {}
    for i, d in enumerate(level_dirs):
        d.mkdir(exist_ok=True)
        canaries[f"L{i}"] = d / f"canary_L{i}.txt"
        canaries[f"L{i}"].write_text(f"{SECRET} level {i}")
        (d / "outside_only_marker").write_text(SECRET)
    c = level_dirs[-1]
    (c / "bob").mkdir()
    canaries["bob"] = c / "bob" / "canary_bob.txt"
    canaries["bob"].write_text(f"{SECRET} bob")
    outside = c / "outside_dir"
    outside.mkdir()
    (outside / "outside_only_marker").write_text(SECRET)
    for name in ("canary_dir.txt", "f.txt", "del.txt"):
        canaries[name] = outside / name
        canaries[name].write_text(f"{SECRET} {name}")
    ws = c / "ws"
    ws.mkdir()
    (ws / "inside.txt").write_text("inside content")
    (ws / "sub").mkdir()
    (ws / "sub" / "note.txt").write_text("note")
    # Symlinks planted by "someone else" (e.g. an uploaded archive); the sandbox must refuse them.
    os.symlink(canaries["L0"], ws / "link_file")
    os.symlink("../canary_L3.txt", ws / "link_file_rel")
    os.symlink(outside, ws / "link_dir")
    os.symlink("../..", ws / "sub" / "link_up")
    os.symlink(outside, ws / "sub" / "link_dir_nested")
    os.symlink(ws / "chain2", ws / "chain1")
    os.symlink(outside, ws / "chain2")
    os.symlink(ws / "inside.txt", ws / "link_inside")
    os.symlink(c / "created_by_escape.txt", ws / "dangling")
    os.symlink("/", ws / "link_root")
    os.symlink(c / "bob", ws / "link_bob")
    os.symlink("link_self", ws / "link_self")
    os.link(canaries["L3"], ws / "hardlink")
    os.mkfifo(ws / "fifo")
    return Layout(tmp_path, ws, outside, canaries)


@dataclass(frozen=True)
class Case:
    id: str
    path: str
    expect: str  # "refuse": every op raises ToolError; "contained": any outcome, but no escape
    unsafe_path: str | None = None  # replaces path for write/delete (never aim those at /etc)


def _depth_target(depth: int) -> tuple[str, str | None]:
    if depth <= 4:
        return f"canary_L{4 - depth}.txt", None
    return "etc/passwd", "{ABS_L0_REL}"


def _corpus() -> list[Case]:
    cases: list[Case] = []
    spellings: dict[str, Callable[[int], str]] = {
        "plain": lambda d: "../" * d,
        "double-slash": lambda d: "..//" * d,
        "dot-prefix": lambda d: "./../" * d,
        "via-subdir": lambda d: "sub/" + "../" * (d + 1),
        "dip-and-back": lambda d: "sub/x/../../" + "../" * d,
    }
    for name, spell in spellings.items():
        for depth in range(1, 11):
            target, unsafe = _depth_target(depth)
            prefix = spell(depth)
            cases.append(
                Case(
                    f"dotdot-{name}-{depth}",
                    prefix + target,
                    "refuse",
                    None if unsafe is None else "../" * 40 + unsafe,
                )
            )
    for i, p in enumerate(["..", "../", "../..", "../../.", "sub/../..", "./.."]):
        cases.append(Case(f"dotdot-dir-{i}", p, "refuse"))
    cases.append(Case("dotdot-deep-passwd", "../" * 40 + "etc/passwd", "refuse", "../" * 40 + "{ABS_L0_REL}"))
    cases.append(Case("dotdot-inside-only", "sub/../inside.txt", "refuse"))
    absolute = {
        "root": "/",
        "etc-passwd": "/etc/passwd",
        "dev-null": "/dev/null",
        "proc-environ": "/proc/self/environ",
        "abs-canary-L0": "{ABS_L0}",
        "abs-canary-L3": "{ABS_L3}",
        "abs-double-slash": "/{ABS_L3}",
        "abs-ws-inside": "{ABS_WS}/inside.txt",
        "abs-ws-dotdot": "{ABS_WS}/../canary_L3.txt",
        "abs-bob": "{ABS_BOB}",
        "abs-outside-dir": "{ABS_OUT}/canary_dir.txt",
    }
    for name, p in absolute.items():
        unsafe = "{ABS_L0}" if p.startswith(("/etc", "/dev", "/proc")) or p == "/" else None
        cases.append(Case(f"absolute-{name}", p, "refuse", unsafe))
    encoded = [
        "%2e%2e%2fcanary_L3.txt",
        "%2e%2e/canary_L3.txt",
        "..%2fcanary_L3.txt",
        "%2E%2E%2F%2E%2E%2Fcanary_L2.txt",
        "%252e%252e%252fcanary_L3.txt",
        "..%252fcanary_L3.txt",
        "%c0%ae%c0%ae/canary_L3.txt",
        "%c0%ae%c0%ae%c0%afcanary_L3.txt",
        "%2e%2e%5ccanary_L3.txt",
        "%2fetc%2fpasswd",
        "inside.txt%00.png",
        "....//canary_L3.txt",
        ".../canary_L3.txt",
        ".. /canary_L3.txt",
        " ../canary_L3.txt",
        "..;/canary_L3.txt",
        "~/canary_L3.txt",
        "$HOME/.ssh/id_rsa",
    ]
    cases += [Case(f"literal-{i}", p, "contained") for i, p in enumerate(encoded)]
    lookalikes = [
        "\uff0e\uff0e\uff0fcanary_L3.txt",
        "\uff0e\uff0e/canary_L3.txt",
        "\u2024\u2024/canary_L3.txt",
        "\u2025/canary_L3.txt",
        "..\u2215canary_L3.txt",
        "..\u2044canary_L3.txt",
        "..\uff0fcanary_L3.txt",
        "\u3002\u3002/canary_L3.txt",
        "\ufe52\ufe52/canary_L3.txt",
        ".\u0307./canary_L3.txt",
        "\u2025\u2215\u2025\u2215canary_L2.txt",
        "\u202e../canary_L3.txt",
        "..\u200b/canary_L3.txt",
        "\uff3c..\uff3ccanary_L3.txt",
    ]
    cases += [Case(f"lookalike-{i}", p, "contained") for i, p in enumerate(lookalikes)]
    for i, p in enumerate(["inside.txt\x00", "..\x00/canary_L3.txt", "\x00", "sub/\x00../canary_L3.txt"]):
        cases.append(Case(f"nul-{i}", p, "refuse"))
    backslashes = [
        "..\\canary_L3.txt",
        "..\\..\\canary_L2.txt",
        "sub\\..\\..\\canary_L3.txt",
        "\\etc\\passwd",
        "C:\\Windows\\win.ini",
        "\\\\server\\share\\x",
        "..\\/canary_L3.txt",
        "inside.txt\\",
    ]
    cases += [Case(f"backslash-{i}", p, "refuse") for i, p in enumerate(backslashes)]
    overlong = {
        "component-256": "a" * 256,
        "component-utf8-256-bytes": "\u00e9" * 128,
        "path-over-limit": "a/" * 600 + "x",
        "dotdot-then-long": "../" + "a" * 300,
    }
    cases += [Case(f"overlong-{k}", p, "refuse") for k, p in overlong.items()]
    cases.append(Case("overlong-component-255-ok", "a" * 255, "contained"))
    for i, p in enumerate(["inside.txt\n", "\r../canary_L3.txt", "a\tb", "\x1b[2J"]):
        cases.append(Case(f"control-{i}", p, "refuse"))
    cases.append(Case("empty", "", "refuse"))
    cases.append(Case("dot", ".", "contained"))  # list of the root is fine, files ops refuse
    symlinks = [
        "link_file",
        "link_file_rel",
        "link_dir",
        "link_dir/canary_dir.txt",
        "link_dir/new.txt",
        "sub/link_up/canary_L3.txt",
        "sub/link_dir_nested/canary_dir.txt",
        "chain1",
        "chain1/canary_dir.txt",
        "link_inside",
        "dangling",
        "link_bob/canary_bob.txt",
        "link_self",
        "link_self/x",
    ]
    cases += [Case(f"symlink-{p.replace('/', '-')}", p, "refuse") for p in symlinks]
    cases.append(Case("symlink-root-passwd", "link_root/etc/passwd", "refuse", "link_root/{ABS_L0_REL}"))
    cases.append(Case("hardlink-to-outside", "hardlink", "contained"))
    cases.append(Case("fifo", "fifo", "contained"))
    return cases


CORPUS = _corpus()


def test_corpus_is_large_and_unique() -> None:
    assert len(CORPUS) >= 100
    assert len({c.id for c in CORPUS}) == len(CORPUS)


def _fill(path: str, layout: Layout) -> str:
    c = layout.canaries
    return (
        path.replace("{ABS_L0_REL}", str(c["L0"]).lstrip("/"))
        .replace("{ABS_L0}", str(c["L0"]))
        .replace("{ABS_L3}", str(c["L3"]))
        .replace("{ABS_WS}", str(layout.ws))
        .replace("{ABS_BOB}", str(c["bob"]))
        .replace("{ABS_OUT}", str(layout.outside_dir))
    )


def _snapshot_outside(layout: Layout) -> dict[str, tuple[str, bytes, int]]:
    """Every entry under the top dir except the workspace: kind, bytes, mtime."""
    snap: dict[str, tuple[str, bytes, int]] = {}
    for dirpath, dirnames, filenames in os.walk(layout.top):
        if Path(dirpath) == layout.ws.parent and "ws" in dirnames:
            dirnames.remove("ws")
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if stat.S_ISREG(st.st_mode):
                snap[str(p)] = ("file", p.read_bytes(), st.st_mtime_ns)
            else:
                snap[str(p)] = ("other", b"", st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else 0)
    return snap


def _workspace_files(layout: Layout) -> set[str]:
    return {str(Path(d) / f) for d, _, fs in os.walk(layout.ws) for f in fs}


def _run(ws: Workspace, op: str, path: str) -> str:
    if op == "read":
        return ws.read_text(path)[0]
    if op == "write":
        ws.write_text(path, "written by test")
        return ""
    if op == "delete":
        ws.delete(path)
        return ""
    return "\n".join(e.name for e in ws.list_dir(path))


def _escapes(before: dict[str, tuple[str, bytes, int]], layout: Layout, output: str) -> list[str]:
    found = []
    after = _snapshot_outside(layout)
    found += [f"changed or deleted outside: {k}" for k in before if after.get(k) != before[k]]
    found += [f"created outside: {k}" for k in after if k not in before]
    if SECRET in output or "root:x:" in output:
        found.append(f"leaked outside content: {output[:80]!r}")
    found += [f"listed outside name: {n}" for n in output.split("\n") if n in OUTSIDE_NAMES]
    return found


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id)
def test_path_corpus_never_escapes(layout: Layout, case: Case, op: str) -> None:
    ws = Workspace(layout.ws)
    raw = case.unsafe_path if (op in ("write", "delete") and case.unsafe_path) else case.path
    path = _fill(raw, layout)
    before = _snapshot_outside(layout)
    files_before = _workspace_files(layout)
    output, refused = "", False
    try:
        output = _run(ws, op, path)
    except ToolError as exc:
        refused = True
        assert str(exc), "a refusal needs a message"
    assert _escapes(before, layout, output) == []
    if case.expect == "refuse":
        assert refused, f"{op} {path!r} should have been refused"
    elif op == "write" and not refused:
        # A literal name: the new file must be inside the workspace.
        assert _workspace_files(layout) - files_before or ws.exists(path)


def test_escape_count_over_whole_corpus_is_zero(layout: Layout) -> None:
    """One pass over every case and op with a running total, for a single headline number."""
    ws = Workspace(layout.ws)
    escapes: list[str] = []
    attempts = 0
    for case in CORPUS:
        for op in OPS:
            raw = case.unsafe_path if (op in ("write", "delete") and case.unsafe_path) else case.path
            path = _fill(raw, layout)
            before = _snapshot_outside(layout)
            output = ""
            with contextlib.suppress(ToolError):
                output = _run(ws, op, path)
            attempts += 1
            escapes += [f"{case.id}/{op}: {e}" for e in _escapes(before, layout, output)]
    assert attempts == len(CORPUS) * len(OPS)
    assert escapes == []


def test_canary_detector_can_fail(layout: Layout) -> None:
    """Prove the escape detector notices real escapes, so a zero above means something."""
    before = _snapshot_outside(layout)
    layout.canaries["L3"].write_text("tampered")
    (layout.outside_dir / "new.txt").write_text("x")
    layout.canaries["bob"].unlink()
    found = _escapes(before, layout, f"{SECRET} leaked\nbob")
    assert len(found) == 5


def _renameat2_exchange() -> object:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.renameat2
    except (OSError, AttributeError):
        pytest.skip("renameat2 is not available on this platform")


def _swap_forever(a: Path, b: Path, stop: threading.Event, swaps: list[int]) -> None:
    renameat2 = _renameat2_exchange()
    at_fdcwd, rename_exchange = -100, 2
    while not stop.is_set():
        # Atomically exchange a real directory and a symlink to outside: the name always exists.
        if renameat2(at_fdcwd, bytes(a), at_fdcwd, bytes(b), rename_exchange) != 0:  # type: ignore[operator]
            raise OSError(ctypes.get_errno(), "renameat2 failed")
        swaps[0] += 1


@pytest.mark.parametrize("target", ["dir", "file"])
def test_symlink_race_never_escapes(layout: Layout, target: str) -> None:
    """A thread keeps swapping a real entry for a symlink to outside while every op runs in a loop.

    "dir": ws/d alternates between a real directory and a symlink to outside_dir (intermediate
    component). "file": ws/d/f.txt alternates between a real file and a symlink to a canary.
    """
    _renameat2_exchange()
    ws = Workspace(layout.ws)
    real = layout.ws / "d"
    real.mkdir()
    (real / "f.txt").write_text("inside")
    if target == "dir":
        a, b = real, layout.ws / "swap"
        os.symlink(layout.outside_dir, b)
    else:
        a, b = real / "f.txt", real / "swap"
        os.symlink(layout.canaries["f.txt"], b)
    before = _snapshot_outside(layout)
    stop, swaps = threading.Event(), [0]
    swapper = threading.Thread(target=_swap_forever, args=(a, b, stop, swaps))
    swapper.start()
    ok = refused = 0
    escapes: list[str] = []
    try:
        for i in range(RACE_ITERATIONS):
            op = RACE_OPS[i % len(RACE_OPS)]
            path = {"read": "d/f.txt", "write": "d/w.txt", "delete": "d/w.txt", "list": "d"}[op]
            try:
                out = _run(ws, op, path)
                ok += 1
                if SECRET in out or OUTSIDE_NAMES.intersection(out.split("\n")):
                    escapes.append(f"{op} returned outside content: {out[:80]!r}")
            except ToolError:
                refused += 1
    finally:
        stop.set()
        swapper.join()
    escapes += _escapes(before, layout, "")
    assert escapes == []
    # The race must actually have been exercised in both states for the zero to mean anything.
    assert swaps[0] > 0 and ok > 0 and refused > 0, (swaps, ok, refused)
