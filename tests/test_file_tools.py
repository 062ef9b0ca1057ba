"""Behaviour of the built-in file tools (list/read/search/write/delete) and the Workspace API."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.errors import ToolArgumentError, ToolError
from tools.files import (
    MAX_LIST_ENTRIES,
    MAX_SEARCH_HITS,
    delete_file,
    list_files,
    read_file,
    search_files,
    write_file,
)
from tools.registry import ToolContext
from tools.workspace import Entry, Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "users" / "alice")


@pytest.fixture
def ctx(ws: Workspace) -> ToolContext:
    return ToolContext(workspace=ws, user="alice", thread_id="t-1")


def _put(ws: Workspace, rel: str, data: str | bytes) -> Path:
    p = ws.root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        p.write_text(data, encoding="utf-8")
    else:
        p.write_bytes(data)
    return p


def test_workspace_creates_its_root(tmp_path: Path) -> None:
    root = tmp_path / "x" / "y"
    Workspace(root)
    assert root.is_dir()


# -- list_files -----------------------------------------------------------------------------------


async def test_list_files_root_sorted_with_dir_slash(ws: Workspace, ctx: ToolContext) -> None:
    _put(ws, "b.txt", "b")
    _put(ws, "a.txt", "a")
    _put(ws, "notes/n.txt", "n")
    os.symlink("/etc", ws.root / "zlink")
    assert await list_files.run(ctx, {}) == "a.txt\nb.txt\nnotes/\nzlink (symlink, not followed)"
    assert await list_files.run(ctx, {"path": "notes"}) == "notes/n.txt"


async def test_list_files_empty_and_errors(ws: Workspace, ctx: ToolContext) -> None:
    assert await list_files.run(ctx, {"path": "."}) == "(empty directory: .)"
    _put(ws, "f.txt", "x")
    with pytest.raises(ToolError, match=r"^no such file: nope$"):
        await list_files.run(ctx, {"path": "nope"})
    with pytest.raises(ToolError, match="not a directory"):
        await list_files.run(ctx, {"path": "f.txt"})


async def test_list_files_is_capped(ws: Workspace, ctx: ToolContext) -> None:
    for i in range(MAX_LIST_ENTRIES + 7):
        _put(ws, f"f{i:04d}.txt", "")
    lines = (await list_files.run(ctx, {})).splitlines()
    assert len(lines) == MAX_LIST_ENTRIES + 1
    assert lines[0] == "f0000.txt"
    assert lines[-1] == "[7 more entries not shown]"


def test_list_dir_entries_and_hidden_temp_files(ws: Workspace) -> None:
    _put(ws, "d/a.txt", "abc")
    _put(ws, "d/.tollgate-tmp-deadbeef", "partial write")
    (ws.root / "d" / "sub").mkdir()
    assert ws.list_dir("d") == [Entry("a.txt", "d/a.txt", "file", 3), Entry("sub", "d/sub", "dir", 0)]


# -- read_file ------------------------------------------------------------------------------------


async def test_read_file_returns_text(ws: Workspace, ctx: ToolContext) -> None:
    _put(ws, "notes/a.txt", "hello\nwörld\n")
    assert await read_file.run(ctx, {"path": "notes/a.txt"}) == "hello\nwörld\n"
    assert await read_file.run(ctx, {"path": "./notes//a.txt"}) == "hello\nwörld\n"


async def test_read_file_truncates_with_visible_marker(ws: Workspace, ctx: ToolContext) -> None:
    _put(ws, "big.txt", "x" * 70_000)
    out = await read_file.run(ctx, {"path": "big.txt"})
    assert out == "x" * 65_536 + "\n[truncated: showing first 65536 of 70000 bytes]"


async def test_read_file_truncation_never_splits_a_character(ws: Workspace, ctx: ToolContext) -> None:
    _put(ws, "euro.txt", "€" * 30_000)  # 3 bytes each; 65536 is not a multiple of 3
    out = await read_file.run(ctx, {"path": "euro.txt"})
    text, marker = out.rsplit("\n", 1)
    assert text == "€" * 21_845
    assert marker == "[truncated: showing first 65535 of 90000 bytes]"


def test_read_text_tuple_and_custom_cap(ws: Workspace) -> None:
    _put(ws, "a.txt", "abcdef")
    assert ws.read_text("a.txt") == ("abcdef", False)
    assert ws.read_text("a.txt", 4) == ("abcd", True)
    assert ws.read_text("a.txt", 6) == ("abcdef", False)


async def test_read_file_errors(ws: Workspace, ctx: ToolContext) -> None:
    _put(ws, "bin.dat", b"\x89PNG\x00\x00")
    (ws.root / "dir").mkdir()
    with pytest.raises(ToolError, match=r"^no such file: notes/a\.txt$"):
        await read_file.run(ctx, {"path": "notes/a.txt"})
    with pytest.raises(ToolError, match=r"^is a directory: dir$"):
        await read_file.run(ctx, {"path": "dir"})
    with pytest.raises(ToolError, match="not a text file"):
        await read_file.run(ctx, {"path": "bin.dat"})
    with pytest.raises(ToolError, match="must name a file"):
        await read_file.run(ctx, {"path": "."})


async def test_read_file_invalid_utf8_is_replaced(ws: Workspace, ctx: ToolContext) -> None:
    _put(ws, "latin1.txt", "café".encode("latin-1"))
    assert await read_file.run(ctx, {"path": "latin1.txt"}) == "caf\ufffd"


def test_reading_a_fifo_does_not_hang(ws: Workspace) -> None:
    os.mkfifo(ws.root / "pipe")
    with pytest.raises(ToolError, match="not a regular file"):
        ws.read_text("pipe")


# -- search_files ---------------------------------------------------------------------------------


async def test_search_is_case_insensitive_with_path_line_hits(ws: Workspace, ctx: ToolContext) -> None:
    _put(ws, "shopping.txt", "eggs\nMilk\nbread\noat milk\n")
    _put(ws, "notes/z.txt", "no dairy here\nMILKSHAKE")
    _put(ws, "image.png", b"milk\x00\x01binary")
    out = await search_files.run(ctx, {"query": "milk"})
    assert out == "notes/z.txt:2: MILKSHAKE\nshopping.txt:2: Milk\nshopping.txt:4: oat milk"


async def test_search_uses_unicode_casefolding(ws: Workspace, ctx: ToolContext) -> None:
    _put(ws, "de.txt", "Die Straße ist lang")
    assert await search_files.run(ctx, {"query": "STRASSE"}) == "de.txt:1: Die Straße ist lang"


async def test_search_does_not_follow_symlinks(ws: Workspace, ctx: ToolContext, tmp_path: Path) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_text("milk secret outside")
    outside_dir = tmp_path / "outdir"
    outside_dir.mkdir()
    (outside_dir / "x.txt").write_text("milk in outside dir")
    os.symlink(secret, ws.root / "link.txt")
    os.symlink(outside_dir, ws.root / "linkdir")
    assert await search_files.run(ctx, {"query": "milk"}) == "no matches for 'milk'"


async def test_search_is_capped_and_truncates_long_lines(ws: Workspace, ctx: ToolContext) -> None:
    _put(ws, "many.txt", "\n".join(f"milk {i}" for i in range(MAX_SEARCH_HITS + 10)))
    _put(ws, "long.txt", "milk " + "y" * 500)
    lines = (await search_files.run(ctx, {"query": "milk"})).splitlines()
    assert lines[0] == "long.txt:1: milk " + "y" * 195 + "…"
    assert len(lines) == MAX_SEARCH_HITS + 1
    assert lines[-1] == f"[stopped after {MAX_SEARCH_HITS} hits]"


async def test_search_rejects_empty_query(ctx: ToolContext) -> None:
    with pytest.raises(ToolArgumentError, match=r"^query: string should have at least 1 character$"):
        await search_files.run(ctx, {"query": ""})


def test_walk_lists_regular_files_only(ws: Workspace, tmp_path: Path) -> None:
    _put(ws, "b/c.txt", "")
    _put(ws, "a.txt", "")
    _put(ws, "b/.tollgate-tmp-0000", "")
    os.symlink(tmp_path, ws.root / "up")
    os.mkfifo(ws.root / "pipe")
    assert ws.walk() == ["a.txt", "b/c.txt"]
    assert ws.walk(max_files=1) == ["a.txt"]


# -- write_file -----------------------------------------------------------------------------------


async def test_write_file_creates_parents_and_reports_bytes(ws: Workspace, ctx: ToolContext) -> None:
    out = await write_file.run(ctx, {"path": "notes/2024/today.txt", "content": "héllo"})
    assert out == "wrote 6 bytes to notes/2024/today.txt"
    assert (ws.root / "notes" / "2024" / "today.txt").read_text(encoding="utf-8") == "héllo"


async def test_write_file_overwrites_atomically(ws: Workspace, ctx: ToolContext) -> None:
    target = _put(ws, "a.txt", "old")
    await write_file.run(ctx, {"path": "a.txt", "content": "new"})
    assert target.read_text() == "new"
    assert sorted(os.listdir(ws.root)) == ["a.txt"]  # no temp file left behind


async def test_failed_write_keeps_old_content(ws: Workspace, ctx: ToolContext, monkeypatch: pytest.MonkeyPatch) -> None:
    target = _put(ws, "a.txt", "old")

    def broken_replace(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ToolError, match="disk is full"):
        await write_file.run(ctx, {"path": "a.txt", "content": "new"})
    assert target.read_text() == "old"
    assert os.listdir(ws.root) == ["a.txt"]


async def test_write_file_size_limit(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "w", max_write_bytes=10)
    ctx = ToolContext(workspace=ws, user="u", thread_id="t")
    assert await write_file.run(ctx, {"path": "ok.txt", "content": "x" * 10}) == "wrote 10 bytes to ok.txt"
    with pytest.raises(ToolError, match=r"^content is too large: 11 bytes \(limit 10\)$"):
        await write_file.run(ctx, {"path": "big.txt", "content": "x" * 11})
    assert not (ws.root / "big.txt").exists()


def test_default_write_limit_is_256_kib(ws: Workspace) -> None:
    ws.write_text("max.txt", "x" * 256 * 1024)
    with pytest.raises(ToolError, match="too large"):
        ws.write_text("over.txt", "x" * (256 * 1024 + 1))


async def test_write_file_errors(ws: Workspace, ctx: ToolContext) -> None:
    (ws.root / "dir").mkdir()
    _put(ws, "file.txt", "x")
    with pytest.raises(ToolError, match=r"^is a directory: dir$"):
        await write_file.run(ctx, {"path": "dir", "content": "x"})
    with pytest.raises(ToolError, match="not a directory"):
        await write_file.run(ctx, {"path": "file.txt/child.txt", "content": "x"})
    with pytest.raises(ToolError, match="not valid text"):
        await write_file.run(ctx, {"path": "s.txt", "content": "\ud800"})
    with pytest.raises(ToolError, match="reserved"):  # would be hidden from listings
        await write_file.run(ctx, {"path": "d/.tollgate-tmp-1234", "content": "x"})


# -- delete_file ----------------------------------------------------------------------------------


async def test_delete_file(ws: Workspace, ctx: ToolContext) -> None:
    target = _put(ws, "notes/a.txt", "x")
    assert await delete_file.run(ctx, {"path": "notes/a.txt"}) == "deleted notes/a.txt"
    assert not target.exists()
    assert (ws.root / "notes").is_dir()


async def test_delete_file_errors(ws: Workspace, ctx: ToolContext) -> None:
    (ws.root / "dir").mkdir()
    with pytest.raises(ToolError, match=r"^no such file: notes/a\.txt$"):
        await delete_file.run(ctx, {"path": "notes/a.txt"})
    with pytest.raises(ToolError, match="only files can be deleted"):
        await delete_file.run(ctx, {"path": "dir"})
    assert (ws.root / "dir").is_dir()


def test_exists(ws: Workspace, tmp_path: Path) -> None:
    _put(ws, "a/b.txt", "")
    os.symlink(tmp_path, ws.root / "link")
    assert ws.exists("a/b.txt") and ws.exists("a") and ws.exists(".")
    assert ws.exists("link")  # the link itself is there ...
    assert not ws.exists("link/users")  # ... but is never followed
    assert not ws.exists("nope.txt")
    with pytest.raises(ToolError):
        ws.exists("../x")
