"""Tool definitions: a typed ``async def`` becomes a Tool with a pydantic-built schema and validator.

Schemas are generated, never hand-written, so the schema the model sees and the validation the
arguments go through cannot drift apart. Output is canonical (titles stripped, keys sorted) because
prompt caching needs the tool block to be byte-identical on every request.
"""

from __future__ import annotations

import copy
import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from tools.errors import ToolArgumentError, ToolError
from tools.netguard import FetchPolicy
from tools.workspace import Workspace

__all__ = [
    "Tool",
    "ToolArgumentError",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "default_registry",
    "make_tool",
    "tool",
]

# strict: "1" is not a path and 1 is not a string; the model must send the right JSON types.
_ARGS_CONFIG = ConfigDict(extra="forbid", strict=True, protected_namespaces=())
_LABEL_MAX = 200


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know about its caller; never part of the schema."""

    workspace: Workspace
    user: str
    thread_id: str
    fetch_policy: FetchPolicy = field(default_factory=FetchPolicy)


def _clean_schema(node: Any) -> Any:
    """Drop pydantic's "title" keywords and sort keys, recursing only into sub-schemas.

    Values such as "default" or "enum" are data and are kept verbatim, and property names are keys
    of "properties", not keywords, so a parameter called "title" survives.
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key in sorted(node):
        value = node[key]
        if key == "title":
            continue
        if key in ("properties", "$defs", "patternProperties"):
            value = {name: _clean_schema(sub) for name, sub in sorted(value.items())}
        elif key in ("items", "additionalProperties", "not", "contains"):
            value = _clean_schema(value)
        elif key in ("anyOf", "allOf", "oneOf", "prefixItems"):
            value = [_clean_schema(sub) for sub in value]
        else:
            value = copy.deepcopy(value)
        out[key] = value
    return out


def _format_errors(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(part) for part in err["loc"]) or "arguments"
        if err["type"] == "missing":
            what = "field required"
        elif err["type"] == "extra_forbidden":
            what = "unexpected field"
        else:
            msg = err["msg"]
            what = msg[:1].lower() + msg[1:]
        problems.append(f"{where}: {what}")
    return "; ".join(problems)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any] = field(hash=False)
    side_effect: bool = False
    high_risk: bool = False
    risk: str = ""  # one line shown on the approval card; "" for read-only tools
    timeout_s: float = 30.0
    trusted_output: bool = False  # False: the output is untrusted data (files, pages, search hits)
    # True: the call can carry data off the machine (a URL, a message to a remote service). Such a call
    # asks for approval like a side effect unless agent/egress.py finds it harmless (see the README).
    egress: bool = False
    fn: Callable[..., Awaitable[str]] = field(kw_only=True, repr=False, compare=False)
    args_model: type[BaseModel] = field(kw_only=True, repr=False, compare=False)
    label_arg: str | None = field(default=None, kw_only=True, repr=False, compare=False)
    # What the tool's author claims (MCP annotations: readOnlyHint, destructiveHint, ...): shown on the card and
    # matchable by policy rules, never a reason to skip a card.
    hints: dict[str, bool] = field(default_factory=dict, kw_only=True, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.high_risk and not self.side_effect:
            raise ValueError(f"{self.name}: high_risk requires side_effect")
        if (self.side_effect or self.egress) and not self.risk.strip():
            raise ValueError(f"{self.name}: a side-effect or egress tool needs a risk summary for the approval card")
        if self.timeout_s <= 0:
            raise ValueError(f"{self.name}: timeout_s must be positive")

    def to_api(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "input_schema": copy.deepcopy(self.input_schema),
            "name": self.name,
        }

    def validate(self, raw: object) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise ToolArgumentError(f"arguments: must be a JSON object, not {type(raw).__name__}")
        try:
            return self.args_model.model_validate(raw).model_dump()
        except ValidationError as exc:
            raise ToolArgumentError(_format_errors(exc)) from None

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> str:
        # Validated again on purpose: cheap, and run() must never trust a caller to have done it.
        # The timeout is applied once, by the caller (agent/toolexec.py: the shorter of timeout_s and the
        # TOLLGATE_TOOL_TIMEOUT_S ceiling), which also cancels the call.
        checked = self.validate(args)
        result = await self.fn(ctx, **checked)
        if not isinstance(result, str):
            raise TypeError(f"{self.name} returned {type(result).__name__}, not str")
        return result

    def source_label(self, args: dict[str, Any]) -> str:
        """Provenance label for this call's output, e.g. "read_file:notes/a.txt"."""
        if self.label_arg is None:
            return self.name
        value = args.get(self.label_arg)
        if value is None:
            value = self.args_model.model_fields[self.label_arg].get_default()
        text = str(value)
        if len(text) > _LABEL_MAX:
            text = text[: _LABEL_MAX - 1] + "…"
        return f"{self.name}:{text}"


ToolT = TypeVar("ToolT", bound=Tool)


def make_tool(kind: type[ToolT], *, name: str, description: str, schema: dict[str, Any],
              fn: Callable[..., Awaitable[str]], args_model: type[BaseModel], **fields: Any) -> ToolT:
    """The one constructor of every Tool (`@tool` functions, MCP servers' tools): the schema the model sees
    is made canonical here, so the tools block stays byte-identical whoever built the tool. `fields` are the
    Tool's policy fields (side_effect, risk, ...) and a subclass's own."""
    return kind(name=name, description=description, input_schema=_clean_schema(schema), fn=fn,
                args_model=args_model, **fields)


def _description(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn)
    if not doc:
        raise TypeError(f"tool {fn.__name__} needs a docstring: it becomes the description")
    return " ".join(doc.split("\n\n")[0].split())


def tool(
    *,
    side_effect: bool = False,
    high_risk: bool = False,
    risk: str = "",
    timeout_s: float = 30.0,
    trusted_output: bool = False,
    egress: bool = False,
) -> Callable[[Callable[..., Awaitable[str]]], Tool]:
    """Turn ``async def f(ctx: ToolContext, path: str, ...) -> str`` into a Tool.

    side_effect: changes state; always needs an approval. egress: can send data off the machine (fetch_url,
    and any future MCP or network tool); needs an approval whenever the thread holds untrusted content or
    its arguments are not exactly what the user typed. trusted_output: the result is our own text, not data.
    """

    def build(fn: Callable[..., Awaitable[str]]) -> Tool:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"tool {fn.__name__} must be an async def")
        hints = typing.get_type_hints(fn, include_extras=True)
        params = list(inspect.signature(fn).parameters.values())
        if not params or hints.get(params[0].name) is not ToolContext:
            raise TypeError(f"tool {fn.__name__}: the first parameter must be annotated ToolContext")
        fields: dict[str, Any] = {}
        for param in params[1:]:
            if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                raise TypeError(f"tool {fn.__name__}: *args, **kwargs and positional-only are not supported")
            if param.name not in hints:
                raise TypeError(f"tool {fn.__name__}: parameter {param.name} needs a type annotation")
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (hints[param.name], default)
        model = create_model(f"{fn.__name__}_args", __config__=_ARGS_CONFIG, **fields)
        return make_tool(
            Tool,
            name=fn.__name__,
            description=_description(fn),
            schema=model.model_json_schema(),
            side_effect=side_effect,
            high_risk=high_risk,
            risk=risk,
            timeout_s=timeout_s,
            trusted_output=trusted_output,
            egress=egress,
            fn=fn,
            args_model=model,
            label_arg=params[1].name if len(params) > 1 else None,
        )

    return build


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool]) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools:
            if item.name in self._tools:
                raise ValueError(f"duplicate tool name: {item.name}")
            self._tools[item.name] = item

    def add(self, tools: Iterable[Tool]) -> None:
        """Register more tools (MCP servers that come up late); names stay unique, the order stays sorted."""
        new = list(tools)
        names = [t.name for t in new]
        clash = sorted({n for n in names if n in self._tools or names.count(n) > 1})
        if clash:
            raise ValueError(f"duplicate tool name: {', '.join(clash)}")
        self._tools.update({t.name: t for t in new})

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._tools))

    def api_definitions(self) -> list[dict[str, Any]]:
        """Tool definitions for the Messages API, sorted by name so the bytes never change."""
        return [self._tools[name].to_api() for name in self.names]

    def __iter__(self) -> Iterator[Tool]:
        return iter([self._tools[name] for name in self.names])

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools


def default_registry() -> ToolRegistry:
    # Imported here: files.py and fetch.py import this module to use @tool.
    from tools.fetch import fetch_url
    from tools.files import delete_file, list_files, read_file, search_files, write_file

    return ToolRegistry([list_files, read_file, search_files, write_file, delete_file, fetch_url])
