"""Supervision on the real broker: a processor killed with SIGKILL is started again with
back-off and the stack goes on serving; one that keeps crashing stops everything."""

from __future__ import annotations

import time

import pytest

from driftway.app.supervisor import RestartPolicy, Stack, StackError, _kill_tree
from driftway.schemas.events import Prediction
from driftway.sdk import EventProducer
from driftway.settings import Settings
from tests.integration.helpers import read_topic

pytestmark = pytest.mark.integration


def supervise_until(stack: Stack, done: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the supervisor did not start it again"
        stack.supervise()
        time.sleep(0.2)


def test_a_killed_processor_is_started_again_and_one_that_keeps_crashing_stops_all(
    stack_settings: Settings,
) -> None:
    with Stack(stack_settings, RestartPolicy(limit=3, window=120, first=0.5)) as stack:
        stack.wait_until_serving()
        sdk = EventProducer(stack.settings)
        for i in range(50):
            sdk.send_event({"event_id": f"s-{i}", "entity_id": "u", "ts": 1_767_225_600_000 + i,
                            "data": {"x": float(i)}})
        sdk.flush()
        first = stack.children["scoring"].pid
        _kill_tree(first)  # a crash: SIGKILL, as an OOM kill would
        supervise_until(stack, lambda: "scoring" in stack.children
                        and stack.children["scoring"].pid != first)
        assert stack.restarts["scoring"] == 1
        for i in range(50, 100):
            sdk.send_event({"event_id": f"s-{i}", "entity_id": "u", "ts": 1_767_225_600_000 + i,
                            "data": {"x": float(i)}})
        sdk.flush()
        ids = [Prediction.from_bytes(v).event_id
               for _, _, v in read_topic(stack.settings, "predictions", 100)]
        assert sorted(ids) == sorted(f"s-{i}" for i in range(100))  # each exactly once
        stack.check()

        # Killed twice more inside the window: the third exit gives up, naming it.
        second = stack.children["scoring"].pid
        _kill_tree(second)
        supervise_until(stack, lambda: "scoring" in stack.children
                        and stack.children["scoring"].pid != second)
        _kill_tree(stack.children["scoring"].pid)
        stack.children["scoring"].wait()
        with pytest.raises(StackError, match="scoring process exited with code -9 and keeps "
                                             "crashing"):
            stack.supervise()
