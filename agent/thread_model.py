"""The model, effort and thinking a thread runs with: chosen per user, fixed per thread.

A user picks a model and an effort in the chat settings (store/model_prefs.py); a NEW thread takes them
when it starts and keeps them for good, since changing the thinking type or the effort invalidates the
thread's message-level cache entries. A thread that started before this existed keeps the deployment's
settings. Which combinations the API accepts is data here (../shared/notes/claude-5x-api.md): a choice
the API would refuse is refused with a clear message before it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from agent.config import Settings
from agent.pricing import PriceTable, UnknownPrice
from store import model_prefs
from store.db import Database
from store.model_prefs import ThreadModelSettings

EFFORTS = ("low", "medium", "high", "xhigh", "max")
# Accepted thinking types per 5.x model (the docs' table). Models without documented rules are not offered.
THINKING_TYPES: dict[str, tuple[str, ...]] = {
    "claude-sonnet-5-5": ("adaptive", "between_tools"),
    "claude-opus-5-5": ("adaptive",),
    "claude-haiku-5-5": ("adaptive", "disabled"),
}
BETWEEN_TOOLS_EFFORTS = ("low", "medium", "high")  # between_tools is refused at xhigh and max


@dataclass(frozen=True)
class ModelChoice:
    model: str
    effort: str
    thinking: str = "adaptive"  # adaptive | between_tools
    display: str = "summarized"

    def thinking_config(self) -> dict[str, str]:
        """The `thinking` field every chat call sends (between_tools takes no other field)."""
        if self.thinking == "between_tools":
            return {"type": "between_tools"}
        return {"type": "adaptive", "display": self.display}

    def stored(self) -> ThreadModelSettings:
        return ThreadModelSettings(self.model, self.effort, self.thinking, self.display)


def deployment_choice(settings: Settings) -> ModelChoice:
    return ModelChoice(settings.model, settings.effort, settings.thinking, settings.thinking_display)


def efforts_for(model: str, thinking: str) -> tuple[str, ...]:
    """The efforts the API accepts for this model with this thinking type (none for an unknown model)."""
    if thinking not in THINKING_TYPES.get(model, ()):
        return ()
    return BETWEEN_TOOLS_EFFORTS if thinking == "between_tools" else EFFORTS


def chat_models(prices: PriceTable, thinking: str) -> list[str]:
    """Models a user may pick: priced today (else they could not be budgeted) and accepting the deployment's
    thinking type."""
    today = datetime.now(UTC).date()
    out = []
    for model in prices.models():
        try:
            prices.require(model, today)
        except UnknownPrice:
            continue
        if efforts_for(model, thinking):
            out.append(model)
    return out


def check_choice(model: str, effort: str, *, prices: PriceTable, thinking: str) -> str | None:
    """Why this choice cannot be used (a sentence for the user), or None."""
    if model not in chat_models(prices, thinking):
        if model in THINKING_TYPES and thinking not in THINKING_TYPES[model]:
            return (f"{model} does not accept `{thinking}` thinking, which this deployment uses; "
                    "pick another model.")
        return f"{model} is not one of the models this deployment offers (priced and with known rules)."
    allowed = efforts_for(model, thinking)
    if effort not in allowed:
        return (f"{model} does not accept effort `{effort}` with `{thinking}` thinking; "
                f"choose one of: {', '.join(allowed)}.")
    return None


async def user_choice(db: Database, settings: Settings, prices: PriceTable, *, user: str) -> ModelChoice:
    """What a new thread of this user gets: their stored choice if it is still valid, else the deployment's."""
    default = deployment_choice(settings)
    pref = await model_prefs.user_pref(db, user=user)
    if pref is None or check_choice(pref[0], pref[1], prices=prices, thinking=settings.thinking) is not None:
        return default
    return ModelChoice(pref[0], pref[1], settings.thinking, settings.thinking_display)


async def fix_for_thread(db: Database, settings: Settings, prices: PriceTable, *, user: str, thread_id: str,
                         new: bool) -> ModelChoice:
    """The thread's settings, stored on its first turn: the user's choice for a new thread, the deployment's
    for one that started before per-thread settings existed."""
    wanted = await user_choice(db, settings, prices, user=user) if new else deployment_choice(settings)
    s = await model_prefs.fix_thread_settings(db, thread_id=thread_id, wanted=wanted.stored())
    return ModelChoice(s.model, s.effort, s.thinking, s.display)


async def for_thread(db: Database, settings: Settings, *, thread_id: str) -> ModelChoice:
    s = await model_prefs.thread_settings(db, thread_id=thread_id)
    return deployment_choice(settings) if s is None else ModelChoice(s.model, s.effort, s.thinking, s.display)
