"""What Tollgate's app (ui/web.py) changes in chainlit (its message and step constructors no longer block the
event loop; nothing is inserted into chainlit's own router), and that every chainlit internal
ui/chainlit_compat.py relies on is still where it was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from store import steps as step_store
from store import threads as thread_store

ROOT = Path(__file__).resolve().parents[1]
# The app as `tollgate serve` builds it; then one Message and one Step built with time.sleep recorded.
PROBE = """
import asyncio, time
from ui import web
web.build_app()
import chainlit as cl
from chainlit.context import init_http_context

async def main():
    calls, real = [], time.sleep
    time.sleep = calls.append
    try:
        init_http_context()
        cl.Message(content="x")
        cl.Step(name="s")
    finally:
        time.sleep = real
    print("sleeps", calls)

asyncio.run(main())
"""


def test_building_messages_and_steps_in_the_app_never_sleeps(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "TOLLGATE_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "sleeps []" in out.stdout, out.stdout  # chainlit 2.x sleeps 1 ms in each constructor


async def test_steps_written_with_the_same_created_at_keep_their_write_order(db):
    # Why the sleep is not needed: chainlit added it so steps get distinct createdAt; ours order by write.
    t = await thread_store.create_thread(db, owner="alice")
    same = "2026-11-24T03:00:00.000000Z"
    names = [f"step {i}" for i in range(12)]
    for i, name in enumerate(reversed(names)):  # ids sort opposite to the write order
        await step_store.upsert_step(db, owner="alice", thread_id=t.id, step_id=f"id-{i:02d}",
                                     values={"name": name, "type": "assistant_message", "created_at": same})
    listed = await step_store.list_steps(db, owner="alice", thread_id=t.id)
    assert [s["name"] for s in listed] == list(reversed(names))


# The app's start-up (its lifespan), then what the cyclic collector still has to walk in a full collection.
STARTUP_PROBE = """
import asyncio, gc
from ui import web

async def main():
    app = web.build_app()
    async with web.lifespan(app):
        print("frozen", gc.get_freeze_count(), "walked", len(gc.get_objects(generation=2)),
              "young", gc.get_threshold()[0])

asyncio.run(main())
"""


def test_after_start_up_a_full_collection_no_longer_walks_the_start_up_heap(tmp_path):
    # Full collections walked the whole heap of chainlit, the SDK and SQLAlchemy on the event loop:
    # 90-320 ms stalls in every session (bench/concurrency_server.py). Start-up now freezes that heap.
    env = {"PATH": "/usr/bin:/bin", "TOLLGATE_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", STARTUP_PROBE], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    _, frozen, _, walked, _, young = out.stdout.split()
    assert int(frozen) > 100_000 and int(walked) < int(frozen) // 100, out.stdout
    assert int(young) >= 5_000  # young collections rarer, so full ones too


def test_the_socket_registry_logout_reads_is_where_chainlit_2_12_keeps_it() -> None:
    """ui/chainlit_compat.disconnect_sockets_of reads it: an upgrade that moves it must fail here, loudly.
    In a subprocess: importing chainlit warns (pydantic), and warnings are errors in this suite."""
    probe = ("import inspect, chainlit.server, chainlit.session\n"
             "assert isinstance(chainlit.session.ws_sessions_sid, dict)\n"
             "assert inspect.iscoroutinefunction(chainlit.server.sio.disconnect)\n"
             "assert 'user' in inspect.signature(chainlit.session.WebsocketSession.__init__).parameters\n"
             "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


# One probe per chainlit internal that ui/chainlit_compat.py relies on (chainlit 2.12): an upgrade that moves or
# renames one fails its test here, loudly, instead of silently dropping a guard. In a subprocess, as above.
INTERNALS = {
    "constructor sleep through the time module": (
        "import importlib, inspect, re, time\n"
        "for name in ('chainlit.message', 'chainlit.step'):\n"
        "    module = importlib.import_module(name)\n"
        "    assert module.time is time, name\n"
        "    assert not re.search(r'(?<!time\\.)\\bsleep\\(', inspect.getsource(module)), name\n"),
    "upload route POST /project/file": (
        "from chainlit.server import router\n"  # the APIRouter chainlit includes in its app
        "from ui.chainlit_compat import UPLOAD_PATH\n"
        "assert any(r.path == UPLOAD_PATH and 'POST' in r.methods for r in router.routes)\n"),
    "allow_origins read once, at chainlit.server's import": (
        "from chainlit.config import config\n"
        "config.project.allow_origins = ['http://only.example:1']\n"
        "import chainlit.server\n"
        "from starlette.middleware.cors import CORSMiddleware\n"
        "cors = [m for m in chainlit.server.app.user_middleware if m.cls is CORSMiddleware]\n"
        "assert len(cors) == 1 and cors[0].kwargs['allow_origins'] == ['http://only.example:1'], cors\n"),
    "the index built by chainlit.server.get_html_template at each request": (
        "import inspect, chainlit.server\n"
        "assert list(inspect.signature(chainlit.server.get_html_template).parameters) == ['root_path']\n"
        "assert 'html_template = get_html_template(root_path)' in inspect.getsource(chainlit.server.serve)\n"),
    "mount_chainlit(app, target, path) loads the target and mounts chainlit's app": (
        "import inspect\n"
        "from chainlit.utils import mount_chainlit\n"
        "assert list(inspect.signature(mount_chainlit).parameters) == ['app', 'target', 'path']\n"
        "source = inspect.getsource(mount_chainlit)\n"
        "assert 'load_module(config.run.module_name)' in source and 'app.mount(path, chainlit_app)' in source\n"),
    "client messages through ChainlitEmitter.process_message": (
        "import inspect, chainlit.emitter, chainlit.socket\n"
        "from chainlit.emitter import ChainlitEmitter\n"
        "assert inspect.iscoroutinefunction(ChainlitEmitter.process_message)\n"
        "assert list(inspect.signature(ChainlitEmitter.process_message).parameters) == ['self', 'payload']\n"
        "assert 'session' in inspect.signature(ChainlitEmitter.__init__).parameters\n"
        "assert 'context.emitter.process_message(payload)' in inspect.getsource(chainlit.socket)\n"
        "assert 'await self.process_message(' in inspect.getsource(chainlit.emitter)  # AskUserMessage answers\n"),
    "edit_message handler in sio.handlers['/']": (
        "import inspect\n"
        "from chainlit.server import sio\n"
        "edit = sio.handlers['/']['edit_message']\n"
        "assert inspect.iscoroutinefunction(edit)\n"
        "assert len(inspect.signature(edit).parameters) == 2  # (sid, payload)\n"),
    "WebsocketSession.require(sid)": (
        "import inspect\n"
        "from chainlit.session import WebsocketSession\n"
        "assert list(inspect.signature(WebsocketSession.require).parameters) == ['socket_id']\n"
        "try:\n"
        "    WebsocketSession.require('no such socket')\n"
        "except ValueError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('require found a session for an unknown socket')\n"),
    "emitter.resume_thread sent after on_chat_resume": (
        "import inspect, chainlit.socket\n"
        "from chainlit.emitter import ChainlitEmitter\n"
        "assert list(inspect.signature(ChainlitEmitter.resume_thread).parameters) == ['self', 'thread_dict']\n"
        "source = inspect.getsource(chainlit.socket)\n"
        "hook = source.index('await config.code.on_chat_resume(thread)')\n"
        "assert source.index('await context.emitter.resume_thread(thread)', hook) > hook\n"),
    "a restored session skips the resume unless told": (
        "import inspect, chainlit.socket\n"
        "from chainlit.server import sio\n"
        "from chainlit.session import WebsocketSession\n"
        "connect = sio.handlers['/']['connect']\n"
        "assert list(inspect.signature(connect).parameters) == ['sid', 'environ', 'auth']\n"
        "assert inspect.signature(WebsocketSession.get).parameters.keys() == {'socket_id'}\n"
        "source = inspect.getsource(chainlit.socket.connection_successful)\n"
        "assert 'context.session.restored and not context.session.has_first_interaction' in source\n"
        "assert 'context.session.thread_id_to_resume and config.code.on_chat_resume' in source\n"
        "assert 'self.restored = True' in inspect.getsource(WebsocketSession.restore)\n"),
}


@pytest.mark.parametrize("probe", list(INTERNALS.values()), ids=list(INTERNALS))
def test_each_chainlit_internal_the_adapter_relies_on_is_where_chainlit_2_12_keeps_it(probe: str) -> None:
    done = subprocess.run([sys.executable, "-c", "import chainlit\n" + probe + "print('ok')\n"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


# Tollgate's app as `tollgate serve` builds it: our routes ahead of the mount, chainlit's own router untouched,
# chainlit's CORS list ours, and chainlit's lifespan (which ends the process with os._exit) not ours.
BUILD_PROBE = """
from ui import web
app = web.build_app()
import chainlit.server
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount
paths = [getattr(r, "path", "") for r in app.router.routes]
mount = next(i for i, r in enumerate(app.router.routes) if isinstance(r, Mount))
assert mount == len(paths) - 1 and app.router.routes[mount].app is chainlit.server.app, paths
assert "/project/file" in paths and len(paths) == 3, paths  # the console's router, the upload refusal, the mount
assert not any(getattr(r, "path", "").startswith("/operator") for r in chainlit.server.app.router.routes)
cors = [m for m in chainlit.server.app.user_middleware if m.cls is CORSMiddleware]
assert cors[0].kwargs["allow_origins"] == ["http://127.0.0.1:8123", "http://localhost:8123"], cors
assert app.router.lifespan_context is not chainlit.server.app.router.lifespan_context
print("ok")
"""


def test_tollgates_app_owns_its_routes_and_lifespan_and_leaves_chainlits_router_alone(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "TOLLGATE_DATA_DIR": str(tmp_path), "HOME": str(tmp_path), "CHAINLIT_PORT": "8123"}
    out = subprocess.run([sys.executable, "-c", BUILD_PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_app_py_refuses_to_be_served_without_tollgates_guards(tmp_path):
    # `chainlit run app.py` would serve the chat without the origin checks, CSP and session guards.
    env = {"PATH": "/usr/bin:/bin", "TOLLGATE_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", "import app"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "tollgate serve" in out.stderr, out.stderr[-2000:]
