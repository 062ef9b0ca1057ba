"""Pacing of the demo model's streams (how fast the fake model "types")."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["DemoSettings"]


def _env_float(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {raw!r}")
    return value


@dataclass
class DemoSettings:
    """first_token_delay_s: wait before the first content delta; tokens_per_second: pace of the rest
    (0 or less = no pacing); max_delta_tokens: largest text delta, in estimated tokens."""

    first_token_delay_s: float = 0.3
    tokens_per_second: float = 80.0
    max_delta_tokens: int = 4
    # Thinking signatures are an HMAC under this key: fixed by default so blocks stored by one run of the
    # app still verify after a restart (the real API's signatures do too). TOLLGATE_DEMO_SIGNING_KEY sets it.
    signing_key: bytes = b"tollgate-demo-model-signing-key"
    context_window: int = 200_000  # tokens: a longer prompt is refused; prompt + output stops at it

    @classmethod
    def from_env(cls) -> DemoSettings:
        """Defaults, overridden by TOLLGATE_DEMO_FIRST_TOKEN_MS and TOLLGATE_DEMO_TOKENS_PER_SEC."""
        settings = cls()
        if (ms := _env_float("TOLLGATE_DEMO_FIRST_TOKEN_MS")) is not None:
            settings.first_token_delay_s = ms / 1000
        if (rate := _env_float("TOLLGATE_DEMO_TOKENS_PER_SEC")) is not None:
            settings.tokens_per_second = rate
        if key := os.environ.get("TOLLGATE_DEMO_SIGNING_KEY", "").strip():
            settings.signing_key = key.encode()
        return settings
