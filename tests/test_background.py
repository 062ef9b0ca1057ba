"""Stopping background tasks (store/background.py): the stopped task's cancellation is swallowed, a
cancellation of the one stopping it is not (a `suppress(CancelledError)` around the await swallowed both)."""

from __future__ import annotations

import asyncio

import pytest

from store.background import cancel_and_wait


async def _forever(started: asyncio.Event) -> None:
    started.set()
    await asyncio.Event().wait()


async def test_every_task_given_is_cancelled_and_has_ended_when_it_returns() -> None:
    started = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(_forever(e)) for e in started]
    for e in started:
        await e.wait()
    await cancel_and_wait(tasks[0], None, tasks[1])
    assert all(t.cancelled() for t in tasks)
    await cancel_and_wait(tasks[0], None)  # stopping an ended task again is harmless


async def test_the_stoppers_own_cancellation_goes_on() -> None:
    started, cancelled_once = asyncio.Event(), asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await _forever(started)
        except asyncio.CancelledError:
            cancelled_once.set()
            await asyncio.Event().wait()  # cleaning up: ends only when cancelled again

    task = asyncio.create_task(slow_to_stop())
    await started.wait()
    stopper = asyncio.create_task(cancel_and_wait(task))
    await cancelled_once.wait()
    stopper.cancel()  # e.g. the shutdown itself is cancelled while it waits
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert task.cancelled()


async def test_a_caller_cleaning_up_after_its_own_cancellation_still_stops_its_tasks() -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def turn() -> None:
        timer = asyncio.create_task(_forever(started))
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:  # the user pressed stop: clean up, then end cancelled
            await cancel_and_wait(timer)
            stopped.set()  # reached: the timer's cancellation was not taken for a second one of ours
            raise

    running = asyncio.create_task(turn())
    await started.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert stopped.is_set()
