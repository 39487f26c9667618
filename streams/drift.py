"""drift: data drift per feature and prediction drift, on what scoring served.

It runs on the processor runtime (``driftway.io.runtime``) as one consumer group over the served
topic (one process sees the whole stream, so one change gives one alert). For each model it keeps
two monitors: the features of every served event (numeric features: two-sample KS or PSI against a
reference window; one-hot ``field=value`` groups: chi-square), and the champion's answer (its
probability of the positive class, or its value, and the predicted class). Alarms go to the drift
topic — and from there to the ``drift_events`` table — naming detector, feature, statistic,
threshold, the event and offset at detection, and the estimated change point. The false-alarm
budget (``drift.false_alarms_per_100k``) holds across all features of a monitor together.

Concept drift (on each version's prequential errors) is watched in the learner, which has the
labels in their one order.
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from driftway.io.runtime import Incoming, Out, run_processor
from driftway.logic.drift import Alarm
from driftway.logic.sequential import SequentialDriftMonitor
from driftway.schemas.events import DriftEvent, Served, label_text
from driftway.settings import DriftSettings, Settings

log = logging.getLogger(__name__)


def prediction_features(served: Served) -> dict[str, float]:
    """What prediction drift watches: the champion's score and its predicted class.

    >>> from datetime import UTC, datetime
    >>> from driftway.schemas.events import Output
    >>> s = Served(event_id="e", entity_id="u", ts=datetime.now(UTC), model="m", champion="v",
    ...            features={}, predicted_at=0,
    ...            outputs={"v": Output(prediction=True, score=0.7,
    ...                                 proba={"true": 0.7, "false": 0.3})})
    >>> prediction_features(s)
    {'score': 0.7, 'prediction=true': 1.0}
    """
    output = served.outputs.get(served.champion)
    if output is None or output.prediction is None:
        return {}
    if output.proba is None:  # a regressor: its value
        return {"prediction": float(output.prediction)}  # type: ignore[arg-type]
    if set(output.proba) == {"true", "false"}:
        score = output.proba["true"]
    else:
        score = output.score if output.score is not None else 0.0
    return {"score": float(score), f"prediction={label_text(output.prediction)}": 1.0}


def describe(alarm: Alarm, began: str | None) -> str:
    """A readable sentence: what moved, how far, since when, and what else moved.

    >>> a = Alarm("data", "cusum", "amount", 15.0, 14.0, 1200, 1100, direction="up",
    ...           before=(10.2, 3.1), after=(14.8, 3.0), moved=(("age", 0.4),))
    >>> describe(a, "e1100").split("; ")  # doctest: +NORMALIZE_WHITESPACE
    ['amount rose from mean 10.2 (sd 3.1) to 14.8 (sd 3) since event e1100,
      100 events before detection', 'also moved: age (0.4 sd)']
    """
    since = (f"since event {began}, " if began else "") + \
        f"{alarm.index - alarm.change_point} events before detection"
    if alarm.before and alarm.after:
        (m0, s0), (m1, s1) = alarm.before, alarm.after
        verb = {"up": "rose", "down": "fell", "sd up": "spread out",
                "sd down": "narrowed"}.get(alarm.direction or "", "changed")
        what = f"{alarm.feature} {verb} from mean {m0:.3g} (sd {s0:.3g}) to {m1:.3g} (sd {s1:.3g})"
    elif alarm.shares_before and alarm.shares_after:
        moves = sorted(alarm.shares_after, key=lambda c: -abs(
            alarm.shares_after[c] - alarm.shares_before.get(c, 0.0)))[:3]  # type: ignore[index]
        what = f"{alarm.feature}: {alarm.direction}; shares " + ", ".join(
            f"{c} {alarm.shares_before.get(c, 0.0):.1%} -> {alarm.shares_after[c]:.1%}"
            for c in moves)
    else:
        what = f"{alarm.feature} changed"
    also = ", ".join(f"{f} ({m:.2g} sd)" for f, m in alarm.moved)
    return f"{what} {since}" + (f"; also moved: {also}" if also else "")


class ModelMonitors:
    """The data and prediction monitors of one model, and where recent events came from.

    Prediction drift compares the answers of one champion: when the champion changes (a deploy,
    a promotion, or a newly learned version under auto_update), its reference starts again —
    a model that learns changes its answers by design, and that is not an alarm.
    """

    def __init__(self, settings: DriftSettings) -> None:
        self.settings = settings
        self.data = self._monitor("data")
        self.prediction = self._monitor("prediction")
        self.champion: str | None = None
        self.champion_n = 0  # events served by the current champion
        self.n = 0
        self.unwatched: set[str] = set()  # trending features already logged
        self._ignored: dict[str, bool] = {}  # feature name → matches drift.ignore_features
        # (partition, offset, event id) of the last events: to name where a change began.
        self.recent: deque[tuple[int, int, str]] = deque(maxlen=4 * settings.data_window)

    def _monitor(self, kind: str) -> SequentialDriftMonitor:
        s = self.settings
        return SequentialDriftMonitor(kind=kind,  # type: ignore[arg-type]
                                      reference=s.data_window, batch=s.data_batch,
                                      false_alarms_per_100k=s.false_alarms_per_100k)

    def watched(self, features: dict[str, float]) -> dict[str, float]:
        """The features not ignored (``drift.ignore_features``), each name matched once."""
        ignored = self._ignored
        new = features.keys() - ignored.keys()
        if new:
            if len(ignored) > 10_000:  # names sent as data (ids) would grow it without end
                ignored.clear()
                new = features.keys()
            ignore = self.settings.ignore_features
            for k in new:
                ignored[k] = any(fnmatchcase(k, pattern) for pattern in ignore)
        return {k: v for k, v in features.items() if not ignored[k]}

    def update(self, served: Served, partition: int, offset: int) -> list[Alarm]:
        self.n += 1
        self.recent.append((partition, offset, served.event_id))
        if self.n <= self.settings.data_warmup:
            return []
        if served.champion != self.champion:
            self.champion, self.champion_n = served.champion, 0
            self.prediction = self._monitor("prediction")
        self.champion_n += 1
        # Alarms report this stream's positions (the monitors see only part of it).
        alarms = self.data.update(self.watched(served.features), at=self.n)
        if not self.data.n % self.data.every:  # a reference is frozen only by a check
            for name in set(self.data.unwatched) - self.unwatched:
                log.info("data drift: %s trends in its reference (non-stationary), not watched",
                         name)
                self.unwatched.add(name)
        if self.champion_n > self.settings.prediction_warmup:
            alarms += self.prediction.update(prediction_features(served), at=self.n)
        return alarms

    def where(self, index: int) -> tuple[int, int, str] | None:
        """Partition, offset and event id of the index-th event, if still remembered."""
        back = self.n - index
        if 0 <= back < len(self.recent):
            return self.recent[-1 - back]
        return None


class DriftWatch:
    """The drift processor: what scoring served → drift events, on the runtime.

    Its input is one consumer group over the served topic: one process sees the whole stream,
    so one change gives one alert. The monitors live in memory and warm up again after a
    restart; an alert is written in the same transaction as the offsets of what raised it.
    """

    name = "drift"
    #: An alarm needs hundreds of events to build up: the broker may gather a tenth of a second
    #: of served records per fetch (the runtime's ``fetch_wait``).
    fetch_wait = 0.1

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic("served")
        self.monitors: dict[str, ModelMonitors] = {}
        self.alarms = 0

    def handle(self, record: Incoming, store: object) -> list[Out]:
        served = Served.from_bytes(record.value or b"")
        monitors = self.monitors.get(served.model)
        if monitors is None:
            monitors = self.monitors[served.model] = ModelMonitors(
                self.settings.drift.for_model(served.model))
        out = []
        for alarm in monitors.update(served, record.partition, record.offset):
            began = monitors.where(alarm.change_point)
            event = DriftEvent(
                ts=datetime.now(UTC), kind=alarm.kind, detector=alarm.detector,
                model=served.model, version=served.champion, feature=alarm.feature,
                statistic=alarm.statistic, threshold=alarm.threshold, p_value=alarm.p_value,
                event_id=served.event_id, source=self.topic, partition=record.partition,
                offset=record.offset, change_point=began[1] if began else None,
                direction=alarm.direction,
                before_mean=alarm.before[0] if alarm.before else None,
                before_sd=alarm.before[1] if alarm.before else None,
                after_mean=alarm.after[0] if alarm.after else None,
                after_sd=alarm.after[1] if alarm.after else None,
                shares_before=alarm.shares_before or {}, shares_after=alarm.shares_after or {},
                moved_features=[f for f, _ in alarm.moved],
                moved_shifts=[m for _, m in alarm.moved],
                detail=describe(alarm, began[2] if began else None))
            self.alarms += 1
            log.info("%s drift on %s (%s)", event.kind, event.feature, event.detector)
            out.append(Out("drift", event.model, event.to_bytes()))
        return out


def main(settings: Settings, instance: str | None = None) -> None:
    """Run the drift processor in the foreground until SIGTERM or Ctrl-C."""
    run_processor(settings, DriftWatch(settings), instance)
