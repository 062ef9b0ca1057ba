"""The demo model runs as a child process (`python -m fakeclaude`), started and stopped by the runtime."""

from __future__ import annotations

import anthropic

from ui.demo_model import DemoModelProcess


async def test_the_demo_model_process_answers_through_the_sdk_and_stops_with_the_app():
    demo = DemoModelProcess()
    base_url = await demo.start()
    proc = demo._proc
    assert proc is not None and base_url.startswith("http://127.0.0.1:")
    try:
        async with anthropic.AsyncAnthropic(api_key="demo-key", base_url=base_url, max_retries=0) as client:
            reply = await client.messages.create(model="claude-sonnet-5-5", max_tokens=256,
                                                 messages=[{"role": "user", "content": "help"}])
        texts = [b.text for b in reply.content if b.type == "text"]
        assert texts and "list my files" in texts[0]  # the demo persona's help
    finally:
        await demo.stop()
    assert proc.returncode == 0  # it exited on its own when its stdin closed; nothing was killed
    await demo.stop()  # idempotent
