"""With ANTHROPIC_API_KEY set the server talks to the configured Messages API, not the embedded demo.

The "real API" here is a scripted model server in this process, reached by the app's SDK through
ANTHROPIC_BASE_URL exactly as it would reach api.anthropic.com."""

from __future__ import annotations

import re
from pathlib import Path

from fakeclaude import DemoModelServer, Reply, ScriptedBrain, TextBlock
from tests.conftest import FAST
from tests.e2e.conftest import PASSWORD, start_server, stop_server
from tests.e2e.test_isolation import Chat

ANSWER = "An answer only the configured endpoint knows."


async def test_with_a_key_the_app_uses_the_configured_api(tmp_path: Path) -> None:
    model = DemoModelServer(brain=ScriptedBrain([Reply(blocks=(TextBlock(ANSWER),))]), settings=FAST)
    url = model.start()
    server = start_server(tmp_path / "data", {"ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_BASE_URL": url})
    chat = Chat(server.url, "alice")
    try:
        server.cli("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        await chat.login()
        await chat.connect()
        await chat.send("which model answers?")
        await chat.wait_for(re.compile(re.escape(ANSWER)))
        [request] = model.requests
        assert "which model answers?" in str(request["messages"][-1]["content"])
        assert "no ANTHROPIC_API_KEY" not in server.log.read_text()  # the demo was never started
    finally:
        await chat.close()
        stop_server(server)
        model.stop()
