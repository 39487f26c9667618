"""The feedback processor refuses a label the model cannot learn where it enters."""

from __future__ import annotations

import pytest

from driftway.io.runtime import Incoming
from driftway.io.state import Store
from driftway.settings import Settings
from driftway.streams.feedback import Feedback


def label(value: bytes) -> Incoming:
    return Incoming("labels", 0, 0, b"e1", b'{"event_id": "e1", "label": ' + value + b"}", 0.0)


def test_a_label_the_model_cannot_learn_is_refused_and_joins_nothing() -> None:
    feedback, store = Feedback(Settings()), Store(0)  # the default: a binary classifier
    with pytest.raises(ValueError, match="maybe"):
        feedback.handle(label(b'"maybe"'), store)
    assert feedback.handle(label(b'"yes"'), store) == []  # waits for what was served
