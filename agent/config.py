"""Settings from the environment (prefix TOLLGATE_), with defaults sensible for a demo."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOLLGATE_", extra="ignore")

    data_dir: Path = Path("data")
    model: str = "claude-sonnet-5-5"
    summary_model: str = "claude-haiku-5-5"
    # Claude 5.x thinks by default and thinking counts toward max_tokens (README "Claude 5.x: thinking and
    # effort"): adaptive thinking at effort medium (the docs' advice for chat), summarised so the chat can
    # show it, and room for thinking plus an answer. Fixed per deployment so every thread's cache survives.
    max_tokens: int = Field(default=4_096, ge=1, le=64_000)
    thinking: Literal["adaptive", "between_tools"] = "adaptive"
    thinking_display: Literal["summarized", "omitted"] = "summarized"
    effort: Literal["low", "medium", "high", "xhigh", "max"] = "medium"
    # Reservations size the prompt with the API's free count_tokens endpoint plus this margin (its count is an
    # estimate within a small margin); when counting is off, fails or takes longer than the timeout, they fall
    # back to ceil(UTF-8 bytes / 2.5), an upper bound for the 5.x tokenizer on English text.
    count_tokens_enabled: bool = True
    count_tokens_timeout_s: float = Field(default=1.0, gt=0, le=30)
    count_tokens_margin_pct: int = Field(default=10, ge=0, le=100)
    # Loop guards
    max_calls_per_message: int = Field(default=15, ge=1)
    max_calls_per_thread: int = Field(default=200, ge=1)
    max_tokens_per_thread: int = Field(default=2_000_000, ge=1)
    max_usd_per_thread: Decimal = Field(default=Decimal("2.00"), ge=0)
    # Per user (defaults; operators override per user) and the whole deployment
    user_daily_usd: Decimal = Field(default=Decimal("1.00"), ge=0)
    user_monthly_usd: Decimal = Field(default=Decimal("10.00"), ge=0)
    global_daily_usd: Decimal = Field(default=Decimal("25.00"), ge=0)
    # Approvals and tools
    approval_timeout_s: float = Field(default=600.0, gt=0)
    tool_timeout_s: float = Field(default=30.0, gt=0)
    tool_result_max_chars: int = Field(default=20_000, ge=100)
    # Per-user storage limits, checked before anything is stored (README "Records and quotas").
    max_user_message_chars: int = Field(default=20_000, ge=1)  # a user's message, also as chainlit persists it
    # Any step the server persists (answer, tool step, card): a card shows a whole write's diff, and a tool
    # step its arguments, so this covers the largest write (256 KiB) twice over.
    max_step_chars: int = Field(default=1_000_000, ge=1_000)
    max_threads_per_user: int = Field(default=1_000, ge=1)  # live (not deleted) threads
    workspace_max_bytes: int = Field(default=20_000_000, ge=0)  # all of a user's workspace files together
    workspace_max_files: int = Field(default=1_000, ge=0)
    # Deleted threads (and their approvals, tool calls, messages) are kept for the audit this many days, then
    # removed by `tollgate db purge` and at start-up. None (unset): kept forever.
    retention_days: float | None = Field(default=None, ge=0)
    # A streaming answer is kept in the store this often, so kill -9 mid-stream loses at most this much.
    partial_save_interval_s: float = Field(default=1.0, ge=0)
    # Prompt caching: "5m" or "1h"
    cache_ttl: str = Field(default="5m", pattern="^(5m|1h)$")
    # Where breakpoints go: none | system (tools+system only) | incremental (also the newest message).
    # Anything but "incremental" is for cost comparisons (bench/cost_curve.py).
    cache_strategy: Literal["none", "system", "incremental"] = "incremental"
    # Context compression: summarise the middle once the prompt would pass this many tokens.
    # 20k (docs/cost-curve.md): 10k saved another ~15% there but compressed ~3x as often, and each
    # compression drops detail and rewrites the cache; without compression 100 turns cost 1.8x as much.
    compress_enabled: bool = True
    compress_above_tokens: int = Field(default=20_000, ge=1_000)
    compress_keep_last: int = Field(default=6, ge=2)
    summary_max_tokens: int = Field(default=1024, ge=64, le=8_192)

    # Logins: refused (even with the right password) once an account or a client address has this many
    # failures within the window; see ui/logins.py. Behind a proxy, TOLLGATE_TRUSTED_PROXY names it.
    login_failures_per_account: int = Field(default=5, ge=1)
    login_failures_per_address: int = Field(default=20, ge=1)
    login_window_s: float = Field(default=900.0, gt=0)

    def thinking_config(self) -> dict[str, str]:
        """The `thinking` field every chat call sends (between_tools takes no other field)."""
        if self.thinking == "between_tools":
            return {"type": "between_tools"}
        return {"type": "adaptive", "display": self.thinking_display}

    # Where users' files live. Every app process of one deployment must see the same directory (a shared
    # mount), so it is required when the database is PostgreSQL (README "Past one machine").
    workspaces: Path | None = None

    @property
    def workspaces_dir(self) -> Path:
        return self.workspaces if self.workspaces is not None else self.data_dir / "workspaces"
