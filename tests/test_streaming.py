"""The delta batcher: the first delta goes out at once, then at most one send per interval, nothing lost."""

from __future__ import annotations

import asyncio

from ui.streaming import DeltaBatcher


async def test_first_delta_is_immediate_then_batched_and_nothing_is_lost():
    sent: list[str] = []

    async def send(chunk: str) -> None:
        sent.append(chunk)

    batcher = DeltaBatcher(send, interval_s=60)  # an interval no test run reaches: only close() flushes
    await batcher.add("Hel")
    assert sent == ["Hel"]
    for piece in ["lo", ", ", "wor", "ld"]:
        await batcher.add(piece)
    assert sent == ["Hel"]  # held back within the interval
    await batcher.close()
    assert sent == ["Hel", "lo, world"] and batcher.sends == 2
    await batcher.close()  # idempotent
    assert sent == ["Hel", "lo, world"]


async def test_the_timer_flushes_a_quiet_tail_without_another_delta():
    flushed = asyncio.Event()
    sent: list[str] = []

    async def send(chunk: str) -> None:
        sent.append(chunk)
        if len(sent) == 2:
            flushed.set()

    batcher = DeltaBatcher(send, interval_s=0.01)
    await batcher.add("a")
    await batcher.add("b")  # within the interval: scheduled, not sent
    await asyncio.wait_for(flushed.wait(), 5)  # the timer sends it, no further delta needed
    assert sent == ["a", "b"]
    await batcher.close()


async def test_zero_interval_sends_every_delta():
    sent: list[str] = []

    async def send(chunk: str) -> None:
        sent.append(chunk)

    batcher = DeltaBatcher(send, interval_s=0)
    for piece in "abc":
        await batcher.add(piece)
    await batcher.close()
    assert sent == ["a", "b", "c"]


async def test_an_empty_delta_does_not_use_up_the_immediate_first_send():
    sent: list[str] = []

    async def send(chunk: str) -> None:
        sent.append(chunk)

    batcher = DeltaBatcher(send, interval_s=60)
    await batcher.add("")  # a thinking block may open with an empty delta
    await batcher.add("First")
    assert sent == ["First"]
    await batcher.close()
