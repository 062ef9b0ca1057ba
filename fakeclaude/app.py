"""The ASGI side of the demo server: /v1/messages (JSON or paced SSE) and /v1/messages/count_tokens."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .accounting import PromptCache
from .compose import compose
from .replies import Brain, Fault, Reply
from .settings import DemoSettings
from .thinking import check_thinking, paused_digest
from .tokens import request_prompt_tokens
from .validation import validate_request
from .wire import StreamPlan, error_body, message_json, plan_stream, usage_json

__all__ = ["MessagesApp", "add_refusal_listener", "remove_refusal_listener"]

# Called (status, message, path) for every request the server itself refuses with a 4xx (not for faults a
# brain injects on purpose): tests/conftest.py fails a test that did not expect one.
_refusal_listeners: list[Callable[[int, str, str], None]] = []


def add_refusal_listener(listener: Callable[[int, str, str], None]) -> None:
    _refusal_listeners.append(listener)


def remove_refusal_listener(listener: Callable[[int, str, str], None]) -> None:
    if listener in _refusal_listeners:
        _refusal_listeners.remove(listener)


class _Endpoint:
    """A plain ASGI callable, so Starlette hands us raw send() and a stream can end without completing."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handler(scope, receive, send)


class MessagesApp:
    def __init__(self, brain: Brain, settings: DemoSettings, cache: PromptCache) -> None:
        self.brain = brain
        self.settings = settings
        self.cache = cache
        self.requests: list[dict[str, Any]] = []
        self.count_requests: list[dict[str, Any]] = []
        self.stream_timings: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._tool_ids = itertools.count(1)
        self._id_salt = secrets.token_hex(4)  # ids stay unique across restarts, as the real API's are
        self._aborts: set[asyncio.Event] = set()
        self._paused: set[str] = set()  # answers returned with pause_turn: they may be continued
        self.asgi = Starlette(
            routes=[
                Route("/v1/messages", _Endpoint(self._messages), methods=["POST"]),
                Route("/v1/messages/count_tokens", _Endpoint(self._count_tokens), methods=["POST"]),
            ]
        )

    def abort_streams(self) -> None:
        """Ends every running stream at its next step; must be called on the server's loop."""
        for event in self._aborts:
            event.set()

    # --- endpoints ----------------------------------------------------------------------------------
    async def _count_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = f"req_demo_{next(self._ids)}"
        body = await self._read_json(scope, receive)
        if isinstance(body, dict):
            self.count_requests.append(body)
        error = self._refusal(scope, body, require_max_tokens=False)
        if error is not None or not isinstance(body, dict):
            response = self._refuse(400, str(error), request_id, "/v1/messages/count_tokens")
        else:
            response = JSONResponse({"input_tokens": request_prompt_tokens(body)}, headers={"request-id": request_id})
        await response(scope, receive, send)

    async def _messages(self, scope: Scope, receive: Receive, send: Send) -> None:
        number = next(self._ids)
        request_id = f"req_demo_{number}"
        body = await self._read_json(scope, receive)
        if isinstance(body, dict):
            self.requests.append(body)
        error = self._refusal(scope, body)
        if error is not None or not isinstance(body, dict):
            await self._refuse(400, str(error), request_id, "/v1/messages")(scope, receive, send)
            return
        try:
            reply = self.brain.respond(body)
        except AssertionError as exc:
            # A test's script went wrong: say so loudly and stop the SDK from retrying it away.
            response = self._error(500, "api_error", str(exc) or "script exhausted", request_id)
            response.headers["x-should-retry"] = "false"
            await response(scope, receive, send)
            return
        fault = reply.fault
        if fault is not None and (fault.kind == "http" or (fault.kind == "sse_error" and not body.get("stream"))):
            await self._fault_response(fault, request_id)(scope, receive, send)
            return
        message = self._message(body, reply, f"msg_demo_{number}")
        if not body.get("stream"):
            message.pop("_hidden_tokens")
            payload = json.dumps(message, ensure_ascii=False).encode()
            if fault is not None and fault.kind == "cut":
                await self._send_cut_json(send, payload, request_id)
                return
            await JSONResponse(message, headers={"request-id": request_id})(scope, receive, send)
            return
        plan = plan_stream(message, self.settings.max_delta_tokens, fault, message.pop("_hidden_tokens"))
        await self._stream(receive, send, plan, request_id, len(self.requests) - 1)

    # --- helpers ------------------------------------------------------------------------------------
    @staticmethod
    async def _read_json(scope: Scope, receive: Receive) -> Any:
        raw = await Request(scope, receive).body()
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def _refusal(self, scope: Scope, body: Any, *, require_max_tokens: bool = True) -> str | None:
        """Why the 5.x API would answer 400, or None: shape, then thinking/effort rules, then the window."""
        error = validate_request(body, require_max_tokens=require_max_tokens)
        if error is not None or not isinstance(body, dict):
            return error or "request body must be a JSON object"
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        error = check_thinking(self.settings.signing_key, body, headers, self._paused)
        if error is None and (tokens := request_prompt_tokens(body)) > self.settings.context_window:
            error = f"prompt is too long: {tokens} tokens > {self.settings.context_window} maximum"
        return error

    def _refuse(self, status: int, message: str, request_id: str, path: str) -> JSONResponse:
        for listener in list(_refusal_listeners):
            listener(status, message, path)
        return self._error(status, "invalid_request_error", message, request_id)

    @staticmethod
    def _error(status: int, error_type: str, message: str, request_id: str) -> JSONResponse:
        return JSONResponse(error_body(error_type, message, request_id), status, headers={"request-id": request_id})

    def _fault_response(self, fault: Fault, request_id: str) -> JSONResponse:
        response = self._error(fault.status, fault.error_type, fault.message, request_id)
        if fault.status in (429, 529):
            # The SDK treats "retry-after: 0" as absent and backs off ~0.5-1 s; retry-after-ms makes the
            # retry near-immediate so fault tests and demos stay fast.
            response.headers["retry-after"] = "0"
            response.headers["retry-after-ms"] = "10"
        return response

    def _message(self, body: dict[str, Any], reply: Reply, message_id: str) -> dict[str, Any]:
        composed = compose(body, reply, key=self.settings.signing_key, prompt_tokens=request_prompt_tokens(body),
                           context_window=self.settings.context_window,
                           tool_id=lambda: f"toolu_demo_{next(self._tool_ids)}_{self._id_salt}")
        usage = usage_json(self.cache.account(body), composed.output_tokens, reply.usage_override,
                           composed.thinking_tokens)
        message = message_json(message_id, str(body["model"]), composed.content, composed.stop_reason, usage,
                               composed.stop_details)
        message["_hidden_tokens"] = composed.hidden_tokens  # pacing only: popped before it is sent
        if composed.stop_reason == "pause_turn":
            self._paused.add(paused_digest(composed.content))
        return message

    @staticmethod
    async def _send_cut_json(send: Send, payload: bytes, request_id: str) -> None:
        # Promise the whole body, send half, then return: uvicorn drops the connection mid-body.
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"request-id", request_id.encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload[: len(payload) // 2], "more_body": True})

    async def _stream(self, receive: Receive, send: Send, plan: StreamPlan, request_id: str, index: int) -> None:
        timing: dict[str, Any] = {
            "request_index": index,
            "started": time.perf_counter(),
            "first_text_delta": None,
            "last_delta": None,
            "finished": None,
        }
        self.stream_timings.append(timing)
        abort = asyncio.Event()
        self._aborts.add(abort)
        watcher = asyncio.create_task(self._watch_disconnect(receive, abort))
        try:
            headers = [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
                (b"request-id", request_id.encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            loop = asyncio.get_running_loop()
            first_at = loop.time() + self.settings.first_token_delay_s
            rate = self.settings.tokens_per_second
            streamed_tokens = 0
            for event in plan.events:
                if event.tokens:
                    # Deltas follow an absolute schedule so pacing does not drift with send() latency.
                    due = first_at + (streamed_tokens / rate if rate > 0 else 0.0)
                    streamed_tokens += event.tokens
                    if await self._wait_until(loop, due, abort):
                        return  # client gone or server stopping: end as a cut
                await send({"type": "http.response.body", "body": event.encode(), "more_body": True})
                if event.tokens:
                    timing["last_delta"] = time.perf_counter()
                    if event.text_delta and timing["first_text_delta"] is None:
                        timing["first_text_delta"] = timing["last_delta"]
            if plan.ending != "cut":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            timing["finished"] = time.perf_counter()
            self._aborts.discard(abort)
            watcher.cancel()  # not awaited: a cancellation of this task must not be swallowed

    @staticmethod
    async def _wait_until(loop: asyncio.AbstractEventLoop, due: float, abort: asyncio.Event) -> bool:
        """Sleeps until `due` (loop time); True if aborted meanwhile."""
        delay = due - loop.time()
        if delay <= 0:
            return abort.is_set()
        try:
            await asyncio.wait_for(abort.wait(), delay)
        except TimeoutError:
            return False
        return True

    @staticmethod
    async def _watch_disconnect(receive: Receive, abort: asyncio.Event) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        abort.set()
