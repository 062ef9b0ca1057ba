"""The @tool decorator, generated schemas, argument validation and the registry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import Field

from tools import default_registry as exported_default_registry
from tools.errors import ToolArgumentError, ToolError
from tools.netguard import FetchPolicy
from tools.registry import Tool, ToolContext, ToolRegistry, default_registry, tool
from tools.workspace import Workspace

PATH_DESC = "Path relative to the root of your workspace, e.g. notes/todo.txt."

EXPECTED_SCHEMAS: dict[str, dict[str, Any]] = {
    "list_files": {
        "type": "object",
        "properties": {
            "path": {
                "type": "string",
                "default": ".",
                "description": "Directory relative to your workspace root; '.' is the root.",
            }
        },
        "additionalProperties": False,
    },
    "read_file": {
        "type": "object",
        "properties": {"path": {"type": "string", "description": PATH_DESC}},
        "required": ["path"],
        "additionalProperties": False,
    },
    "search_files": {
        "type": "object",
        "properties": {
            "query": {
                "type": "string",
                "description": "Text to look for (case-insensitive substring).",
                "minLength": 1,
                "maxLength": 200,
            }
        },
        "required": ["query"],
        "additionalProperties": False,
    },
    "write_file": {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": PATH_DESC},
            "content": {"type": "string", "description": "The complete new text content of the file."},
        },
        "required": ["path", "content"],
        "additionalProperties": False,
    },
    "delete_file": {
        "type": "object",
        "properties": {"path": {"type": "string", "description": PATH_DESC}},
        "required": ["path"],
        "additionalProperties": False,
    },
    "fetch_url": {
        "type": "object",
        "properties": {
            "url": {
                "type": "string",
                "description": "Full http:// or https:// address of a public web page.",
                "maxLength": 2048,
            }
        },
        "required": ["url"],
        "additionalProperties": False,
    },
}

EXPECTED_DESCRIPTIONS = {
    "list_files": "List the files and folders in a directory of your workspace. Folders end with '/'.",
    "read_file": "Read a text file from your workspace. Large files are cut off with a visible marker.",
    "search_files": ("Search the text files in your workspace for a word or phrase; returns path:line: text hits."),
    "write_file": "Create a text file in your workspace, or replace an existing file's content entirely.",
    "delete_file": "Delete a file from your workspace. This cannot be undone.",
    "fetch_url": "Fetch a public web page and return its readable text. Only public http(s) addresses work.",
}

# name: (side_effect, high_risk, risk, trusted_output, timeout_s, egress)
EXPECTED_FLAGS = {
    "list_files": (False, False, "", False, 30.0, False),
    "read_file": (False, False, "", False, 30.0, False),
    "search_files": (False, False, "", False, 30.0, False),
    "fetch_url": (False, False, "Sends a request off this machine; anything in the address (host, path, query) "
                  "goes with it.", False, 30.0, True),
    "write_file": (True, False, "Creates or overwrites a file in your workspace.", True, 30.0, False),
    "delete_file": (True, True, "Permanently deletes a file from your workspace.", True, 30.0, False),
}


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(workspace=Workspace(tmp_path / "ws"), user="alice", thread_id="t-1")


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


# -- built-in schemas -----------------------------------------------------------------------------


def test_default_registry_names() -> None:
    reg = default_registry()
    assert reg.names == (
        "delete_file",
        "fetch_url",
        "list_files",
        "read_file",
        "search_files",
        "write_file",
    )
    assert exported_default_registry().names == reg.names


@pytest.mark.parametrize("name", sorted(EXPECTED_SCHEMAS))
def test_builtin_schema_is_exact(name: str) -> None:
    t = default_registry().get(name)
    assert t is not None
    assert t.input_schema == EXPECTED_SCHEMAS[name]
    assert t.description == EXPECTED_DESCRIPTIONS[name]
    assert t.to_api() == {
        "name": name,
        "description": EXPECTED_DESCRIPTIONS[name],
        "input_schema": EXPECTED_SCHEMAS[name],
    }


@pytest.mark.parametrize("name", sorted(EXPECTED_FLAGS))
def test_builtin_flags(name: str) -> None:
    t = default_registry().get(name)
    assert t is not None
    assert (t.side_effect, t.high_risk, t.risk, t.trusted_output, t.timeout_s, t.egress) == EXPECTED_FLAGS[name]


def test_schemas_have_no_titles_anywhere() -> None:
    assert '"title"' not in _dumps(default_registry().api_definitions())


def test_api_definitions_are_sorted_and_byte_stable() -> None:
    reg = default_registry()
    first = reg.api_definitions()
    assert [d["name"] for d in first] == sorted(d["name"] for d in first)
    assert _dumps(first) == _dumps(reg.api_definitions()) == _dumps(default_registry().api_definitions())
    # Key order is canonical too, so even a serializer that does not sort keys is stable.
    assert json.dumps(first) == json.dumps(reg.api_definitions()) == _dumps(first)
    for t in reg:
        assert _dumps(t.to_api()) == _dumps(t.to_api())


def test_api_definitions_are_copies() -> None:
    reg = default_registry()
    defs = reg.api_definitions()
    defs[0]["input_schema"]["properties"].clear()
    defs[0]["name"] = "mutated"
    assert reg.api_definitions()[0]["input_schema"]["properties"] != {}
    assert reg.api_definitions()[0]["name"] == "delete_file"


def test_stable_across_processes() -> None:
    code = "import json; from tools import default_registry; print(json.dumps(default_registry().api_definitions()))"
    root = Path(__file__).resolve().parents[1]
    runs = {
        subprocess.run(
            [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True, env=env
        ).stdout
        for env in ({"PYTHONHASHSEED": "1"}, {"PYTHONHASHSEED": "2"})
    }
    assert len(runs) == 1
    assert json.loads(runs.pop()) == default_registry().api_definitions()


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("read_file", {}, "path: field required"),
        ("read_file", {"path": 1}, "path: input should be a valid string"),
        ("read_file", {"path": None}, "path: input should be a valid string"),
        ("read_file", {"path": b"a.txt"}, "path: input should be a valid string"),
        ("read_file", {"path": ["a"]}, "path: input should be a valid string"),
        ("read_file", {"path": "a", "mode": "w"}, "mode: unexpected field"),
        ("write_file", {"path": "a"}, "content: field required"),
        ("write_file", {}, "path: field required; content: field required"),
        (
            "write_file",
            {"path": 3, "content": 4},
            "path: input should be a valid string; content: input should be a valid string",
        ),
        ("search_files", {"query": ""}, "query: string should have at least 1 character"),
        ("search_files", {"query": "q" * 201}, "query: string should have at most 200 characters"),
        ("fetch_url", {"url": "https://x/" + "a" * 2048}, "url: string should have at most 2048 characters"),
        ("list_files", {"path": 0}, "path: input should be a valid string"),
        ("list_files", {"recursive": True}, "recursive: unexpected field"),
    ],
)  # fmt: skip
def test_validation_errors_name_the_field(name: str, raw: object, message: str) -> None:
    t = default_registry().get(name)
    assert t is not None
    with pytest.raises(ToolArgumentError) as info:
        t.validate(raw)
    assert str(info.value) == message


@pytest.mark.parametrize("raw", [None, [], ["a.txt"], "a.txt", 1, ("path", "a")])
def test_validation_rejects_non_dict(raw: object) -> None:
    t = default_registry().get("read_file")
    assert t is not None
    with pytest.raises(ToolArgumentError, match=r"^arguments: must be a JSON object, not "):
        t.validate(raw)


def test_validation_normalises_and_fills_defaults() -> None:
    reg = default_registry()
    list_tool, write_tool = reg.get("list_files"), reg.get("write_file")
    assert list_tool is not None and write_tool is not None
    assert list_tool.validate({}) == {"path": "."}
    raw = {"content": "x", "path": "a.txt"}
    validated = write_tool.validate(raw)
    assert validated == {"path": "a.txt", "content": "x"}
    assert validated is not raw


async def test_run_validates_before_calling(ctx: ToolContext) -> None:
    calls: list[str] = []

    @tool()
    async def probe(ctx: ToolContext, path: str) -> str:
        """Probe."""
        calls.append(path)
        return path

    with pytest.raises(ToolArgumentError):
        await probe.run(ctx, {"path": 5})
    assert calls == []
    assert await probe.run(ctx, {"path": "ok"}) == "ok"
    assert calls == ["ok"]


# -- the decorator --------------------------------------------------------------------------------


def test_decorator_builds_schema_from_hints_and_docstring() -> None:
    @tool(side_effect=True, high_risk=True, risk="Sends an email.", timeout_s=5.0, trusted_output=True)
    async def send_note(
        ctx: ToolContext,
        title: Annotated[str, Field(description="The subject line.")],
        count: int = 1,
        mode: Literal["a", "b"] = "a",
        tags: list[str] | None = None,
    ) -> str:
        """Send a note
        to someone.

        More detail that is not part of the description.
        """
        return "sent"

    assert isinstance(send_note, Tool)
    assert send_note.name == "send_note"
    assert send_note.description == "Send a note to someone."
    assert (send_note.side_effect, send_note.high_risk, send_note.risk) == (True, True, "Sends an email.")
    assert (send_note.timeout_s, send_note.trusted_output) == (5.0, True)
    # A parameter called "title" survives title-stripping; the pydantic "title" keywords do not.
    assert send_note.input_schema == {
        "type": "object",
        "properties": {
            "title": {"type": "string", "description": "The subject line."},
            "count": {"type": "integer", "default": 1},
            "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
            "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}], "default": None},
        },
        "required": ["title"],
        "additionalProperties": False,
    }  # fmt: skip
    assert send_note.validate({"title": "hi"}) == {"title": "hi", "count": 1, "mode": "a", "tags": None}
    with pytest.raises(ToolArgumentError, match=r"^count: input should be a valid integer$"):
        send_note.validate({"title": "hi", "count": "3"})
    with pytest.raises(ToolArgumentError, match=r"^count: input should be a valid integer$"):
        send_note.validate({"title": "hi", "count": True})
    with pytest.raises(ToolArgumentError, match=r"^mode: input should be 'a' or 'b'$"):
        send_note.validate({"title": "hi", "mode": "c"})
    with pytest.raises(ToolArgumentError, match=r"^tags\.0: input should be a valid string$"):
        send_note.validate({"title": "hi", "tags": [1]})


def test_decorator_rejects_bad_definitions() -> None:
    with pytest.raises(TypeError, match="async def"):

        @tool()  # type: ignore[arg-type]
        def not_async(ctx: ToolContext) -> str:
            """Doc."""
            return ""

    with pytest.raises(TypeError, match="ToolContext"):

        @tool()
        async def no_ctx(path: str) -> str:
            """Doc."""
            return path

    with pytest.raises(TypeError, match="type annotation"):

        @tool()
        async def untyped(ctx: ToolContext, path) -> str:  # type: ignore[no-untyped-def]
            """Doc."""
            return ""

    with pytest.raises(TypeError, match="docstring"):

        @tool()
        async def undocumented(ctx: ToolContext) -> str:
            return ""

    with pytest.raises(TypeError, match="not supported"):

        @tool()
        async def star(ctx: ToolContext, *paths: str) -> str:
            """Doc."""
            return ""


def test_tool_invariants() -> None:
    async def fn(ctx: ToolContext) -> str:
        return ""

    common: dict[str, Any] = {"name": "x", "description": "d", "input_schema": {}, "fn": fn}
    model = default_registry().get("read_file").args_model  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="high_risk requires side_effect"):
        Tool(**common, high_risk=True, args_model=model)
    with pytest.raises(ValueError, match="risk summary"):
        Tool(**common, side_effect=True, args_model=model)
    with pytest.raises(ValueError, match="risk summary"):
        Tool(**common, egress=True, args_model=model)
    with pytest.raises(ValueError, match="timeout_s"):
        Tool(**common, timeout_s=0, args_model=model)


async def test_run_passes_tool_errors_and_rejects_non_str(ctx: ToolContext) -> None:
    @tool()
    async def failing(ctx: ToolContext) -> str:
        """Fails."""
        raise ToolError("no such file: notes/a.txt")

    @tool()
    async def wrong_type(ctx: ToolContext) -> str:
        """Returns a number."""
        return 42  # type: ignore[return-value]

    with pytest.raises(ToolError, match=r"^no such file: notes/a\.txt$"):
        await failing.run(ctx, {})
    with pytest.raises(TypeError, match="not str"):
        await wrong_type.run(ctx, {})


async def test_ctx_reaches_the_tool_and_is_not_in_schema(ctx: ToolContext) -> None:
    @tool()
    async def whoami(ctx: ToolContext) -> str:
        """Who is asking."""
        return f"{ctx.user}@{ctx.thread_id}"

    assert whoami.input_schema == {"type": "object", "properties": {}, "additionalProperties": False}
    assert await whoami.run(ctx, {}) == "alice@t-1"
    with pytest.raises(ToolArgumentError, match=r"^ctx: unexpected field$"):
        whoami.validate({"ctx": "x"})
    assert whoami.source_label({}) == "whoami"


def test_tool_context_defaults_and_is_frozen(ctx: ToolContext) -> None:
    assert ctx.fetch_policy == FetchPolicy()
    with pytest.raises(AttributeError):
        ctx.user = "mallory"  # type: ignore[misc]


# -- source labels and the registry ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args", "label"),
    [
        ("read_file", {"path": "notes/a.txt"}, "read_file:notes/a.txt"),
        ("fetch_url", {"url": "https://x/y"}, "fetch_url:https://x/y"),
        ("search_files", {"query": "milk"}, "search_files:milk"),
        ("list_files", {}, "list_files:."),
        ("list_files", {"path": "notes"}, "list_files:notes"),
        ("write_file", {"path": "a.txt", "content": "secret"}, "write_file:a.txt"),
        ("delete_file", {"path": "a.txt"}, "delete_file:a.txt"),
    ],
)
def test_source_labels(name: str, args: dict[str, Any], label: str) -> None:
    t = default_registry().get(name)
    assert t is not None
    assert t.source_label(args) == label


def test_source_label_is_bounded() -> None:
    t = default_registry().get("fetch_url")
    assert t is not None
    label = t.source_label({"url": "https://x/" + "a" * 500})
    assert len(label) == len("fetch_url:") + 200 and label.endswith("…")


def test_registry_rejects_duplicates_and_looks_up() -> None:
    builtin = list(default_registry())
    with pytest.raises(ValueError, match="duplicate tool name: read_file"):
        ToolRegistry([*builtin, builtin[3]])
    reg = ToolRegistry(reversed(builtin))
    assert reg.get("nope") is None
    assert [t.name for t in reg] == list(reg.names)
    assert len(reg) == 6 and "read_file" in reg and "nope" not in reg


def test_tools_package_imports_no_app_layers() -> None:
    code = (
        "import sys, tools, tools.files, tools.fetch, tools.registry, tools.workspace\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'chainlit', 'agent', 'store', 'ui'})\n"
        "print(bad)"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_tool_is_built_by_make_tool_with_a_canonical_schema() -> None:
    """@tool and an MCP server's tool share one constructor, so both schemas are canonical the same way."""
    import ast

    from mcp import types

    from tools.mcp.tooldefs import build_tool

    root = Path(__file__).resolve().parents[1]
    for module in (root / "tools" / "registry.py", root / "tools" / "mcp" / "tooldefs.py"):
        called = {ast.unparse(n.func) for n in ast.walk(ast.parse(module.read_text())) if isinstance(n, ast.Call)}
        assert "make_tool" in called and not {"Tool", "McpTool"} & called, module

    async def call(ctx: ToolContext, name: str, args: dict[str, Any]) -> str:
        return ""

    schema = {"type": "object", "title": "Args", "required": ["b"],
              "properties": {"b": {"type": "string", "title": "B"}, "a": {"type": "integer"}}}
    spec = types.Tool(name="lookup", description="Look up.", inputSchema=schema)
    built = build_tool("srv", spec, read_only=True, timeout_s=5.0, call=call)
    assert json.dumps(built.input_schema) == json.dumps(
        {"properties": {"a": {"type": "integer"}, "b": {"type": "string"}}, "required": ["b"], "type": "object"})
