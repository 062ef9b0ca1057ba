"""The chat settings panel: the user's model and effort for new threads, and their budget left.

The choice is stored per user and taken by a thread when it starts (agent/thread_model.py); the open
thread keeps what it started with, so its prompt cache survives. A choice the API would refuse changes
nothing and says why. The budget line (today / this month) is refreshed after every turn.
"""

from __future__ import annotations

from typing import Any

import chainlit as cl
from chainlit.input_widget import Select, TextInput

from agent import thread_model
from agent.budget import Budget
from agent.config import Settings
from store import model_prefs
from store.db import Database
from ui.runtime import Runtime

MODEL, EFFORT, BUDGET = "tollgate_model", "tollgate_effort", "tollgate_budget_left"


async def show(rt: Runtime, user: str) -> None:
    """Chat start, resume and after each turn: the panel with the user's choice and today's budget."""
    await send(rt.db, rt.settings, rt.agent.deps.budget, user=user)


async def changed(rt: Runtime, user: str, values: dict[str, Any]) -> None:
    saved, text = await on_update(rt.db, rt.settings, rt.agent.deps.budget, user=user, values=values)
    # A toast, not a chat message: a message would be stored in (and could create) a thread.
    await cl.context.emitter.send_toast(text, "success" if saved else "error")


async def _widgets(db: Database, settings: Settings, budget: Budget, *, user: str,
                   model: str, effort: str) -> list[Any]:
    # A deployment default outside the known rules (a test model id) is still shown, alone.
    models = thread_model.chat_models(budget.prices, settings.thinking) or [model]
    efforts = list(thread_model.efforts_for(model, settings.thinking)) or [effort]
    left = await budget.left(user=user)
    return [
        Select(id=MODEL, label="Model for new threads", values=models, initial_value=model,
               description="This thread keeps the model it started with (its prompt cache survives)."),
        Select(id=EFFORT, label="Effort for new threads", values=efforts, initial_value=effort,
               description="How much the model thinks: medium suits a chat; higher costs more output tokens."),
        TextInput(id=BUDGET, label="Your budget left", initial=left.line(), disabled=True,
                  description="Refreshed after each answer."),
    ]


async def send(db: Database, settings: Settings, budget: Budget, *, user: str) -> None:
    """Show the panel with the user's stored choice (or the deployment's defaults)."""
    choice = await thread_model.user_choice(db, settings, budget.prices, user=user)
    await cl.ChatSettings(await _widgets(db, settings, budget, user=user, model=choice.model,
                                         effort=choice.effort)).send()


async def on_update(db: Database, settings: Settings, budget: Budget, *, user: str,
                    values: dict[str, Any]) -> tuple[bool, str]:
    """Validate and store the user's choice: (saved, what to tell the user). An invalid one changes nothing."""
    current = await thread_model.user_choice(db, settings, budget.prices, user=user)
    model = str(values.get(MODEL) or current.model)
    effort = str(values.get(EFFORT) or current.effort)
    problem = thread_model.check_choice(model, effort, prices=budget.prices, thinking=settings.thinking)
    if problem is not None:
        await send(db, settings, budget, user=user)  # the panel shows the stored choice again
        return False, (f"Not saved: {problem} Your settings are unchanged ({current.model}, "
                       f"effort {current.effort}).")
    await model_prefs.set_user_pref(db, user=user, model=model, effort=effort)
    await send(db, settings, budget, user=user)  # the effort list may differ for the new model
    return True, (f"Saved: new threads will use {model} at effort {effort}. "
                  "This thread keeps the model and effort it started with.")
