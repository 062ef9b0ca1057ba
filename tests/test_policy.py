"""Approval routing matches the path the workspace would touch, never the model's spelling of it.

The shipped policy routes `write_file` under `notes/*` to the user and every other write to an operator.
Each spelling below is checked against what the real Workspace does with it, so the rule and the tool
cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.policy import ApprovalPolicy, Rule
from tools import ToolError, Workspace, default_registry, normalise_path

WRITE = default_registry().get("write_file")
DELETE = default_registry().get("delete_file")
FETCH = default_registry().get("fetch_url")
SHIPPED = ApprovalPolicy.load(Path(__file__).parents[1] / "agent" / "policy.toml")

# spelling -> (the file the workspace writes, the route)
SPELLINGS = {
    "notes/a.txt": ("notes/a.txt", "user"),
    "./notes/a": ("notes/a", "user"),
    "notes//a": ("notes/a", "user"),
    "notes/a/": ("notes/a", "user"),
    "notes/./a": ("notes/a", "user"),
    "notes/.": ("notes", "operator"),  # a file named `notes` at the root: the operator's rule
    "notes/": ("notes", "operator"),
    "./notes": ("notes", "operator"),
    "NOTES/a": ("NOTES/a", "operator"),  # the workspace is case-sensitive: another folder
    "Notes/a": ("Notes/a", "operator"),
    "n\u043ehtes/a".replace("h", ""): ("n\u043etes/a", "operator"),  # Cyrillic o: another folder
    "notes\u2215a": ("notes\u2215a", "operator"),  # DIVISION SLASH is a name character, not a separator
    "x/notes/a": ("x/notes/a", "operator"),
}
REFUSED = ["notes/../x", "notes/../notes/a", "../notes/a", "notes\\a", "notes\\..\\x", "/notes/a", "notes/\x00a",
           "notes/\na", ""]


def test_route_for_path_the_workspace_writes(tmp_path: Path) -> None:
    assert WRITE is not None
    for i, (spelling, (written, route)) in enumerate(SPELLINGS.items()):
        ws = Workspace(tmp_path / f"ws{i}")
        assert normalise_path(spelling) == written, spelling
        assert SHIPPED.route_for(WRITE, {"path": spelling, "content": "x"}) == route, spelling
        ws.write_text(spelling, spelling)  # the real tool agrees on where it lands
        assert (ws.root / written).read_text() == spelling, spelling


@pytest.mark.parametrize("spelling", REFUSED)
def test_unresolvable_path_takes_the_strictest_route(spelling: str) -> None:
    assert WRITE is not None
    with pytest.raises(ToolError):
        normalise_path(spelling)
    assert SHIPPED.route_for(WRITE, {"path": spelling, "content": "x"}) == "operator"


def test_unresolvable_path_without_an_operator_rule_goes_to_the_user() -> None:
    assert WRITE is not None
    policy = ApprovalPolicy([Rule(tool="write_file", path="notes/*", route="none")])
    assert policy.route_for(WRITE, {"path": "notes/../x", "content": "x"}) == "user"
    assert policy.route_for(WRITE, {"path": "notes/x", "content": "x"}) == "user"  # "none" never waives


def test_unresolvable_path_uses_rules_for_any_tool() -> None:
    assert WRITE is not None and DELETE is not None
    policy = ApprovalPolicy([Rule(tool="write_file", path="notes/*", route="user"),
                             Rule(tool="*", route="operator")])
    assert policy.route_for(WRITE, {"path": "notes\\x", "content": "x"}) == "operator"
    # An operator rule for another tool does not count.
    only_delete = ApprovalPolicy([Rule(tool="write_file", path="notes/*", route="user"),
                                  Rule(tool="delete_file", route="operator")])
    assert only_delete.route_for(WRITE, {"path": "notes\\x", "content": "x"}) == "user"


def test_rules_without_a_path_and_tools_without_one() -> None:
    assert FETCH is not None and DELETE is not None
    assert SHIPPED.route_for(DELETE, {"path": "notes/../x"}) == "operator"
    assert SHIPPED.route_for(FETCH, {"url": "http://example.com/"}) == "user"
    policy = ApprovalPolicy([Rule(tool="*", path="notes/*", route="operator")])
    assert policy.route_for(FETCH, {"url": "http://example.com/notes/x"}) == "user"  # no path argument
