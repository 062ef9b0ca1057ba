"""What the history keeps of an answer still streaming. The renderer only renders; this writes through the
data layer, so a page opened after a crash shows what had arrived (marked cut until the final send
overwrites it)."""

from __future__ import annotations

from typing import Any

from chainlit.data import get_data_layer

from ui.placement import stamp
from ui.safe_markdown import sanitize

INCOMPLETE_MARK = "\n\n*(incomplete: the answer was cut off here)*"


async def keep_partial_answer(step: dict[str, Any], text: str) -> None:
    layer = get_data_layer()
    if layer is None:
        return
    await layer.update_step({**step, "output": sanitize(text) + INCOMPLETE_MARK,
                             "createdAt": step.get("createdAt") or stamp()})
