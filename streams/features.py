"""features: raw events → feature vectors (``driftway.logic.features``), with each entity's
running state in its partition's changelog-backed store, so it survives a restart. Runs on the
processor runtime (``driftway.io.runtime``): one transaction holds a batch's vectors, its state
changes and its input offsets."""

from __future__ import annotations

from driftway.io.runtime import Incoming, Out, run_processor
from driftway.io.state import Store
from driftway.logic.features import featurize
from driftway.logic.limits import decode_checked
from driftway.schemas.events import RawEvent
from driftway.settings import LimitsSettings, Settings

_DEFAULT_LIMITS = LimitsSettings()


def decode_raw(value: bytes | None, limits: LimitsSettings = _DEFAULT_LIMITS) -> RawEvent:
    """Validate raw bytes as a RawEvent within the input limits (raises ValidationError,
    LimitExceeded or ValueError)."""
    return decode_checked(RawEvent, value, limits)


class Features:
    """The features processor: one raw event and its entity's state → its feature vector."""

    name = "features"

    def __init__(self, limits: LimitsSettings = _DEFAULT_LIMITS) -> None:
        self.limits = limits

    def handle(self, record: Incoming, store: Store | None) -> list[Out]:
        assert store is not None  # the topology gives features a state
        raw = decode_checked(RawEvent, record.value, self.limits)
        vector, state = featurize(raw, store.get(raw.entity_id), record.received_at)
        store.set(raw.entity_id, state)
        return [Out("features", raw.entity_id, vector.to_bytes())]


def main(settings: Settings, instance: str | None = None) -> None:
    """Run the features processor in the foreground."""
    run_processor(settings, Features(settings.limits), instance)
