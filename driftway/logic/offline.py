"""The learning loop without Kafka: serve with the deployed versions, learn from delayed labels.

The same ``Learner`` (evaluation, concept drift, policy, publication) that runs on the training
topic, fed in-process: each event is answered by the deployed champion and shadows as scoring
serves them — each line's model as learned so far (``processing.live_updates``, the default), or
the frozen published versions — and its label reaches the learner ``label_delay`` events later.
Tests, the drift, adaptation and fidelity benchmarks and the demo's summary use it to run long
streams fast: it is the in-process reference of what the pipeline serves, without its latency.

>>> from driftway.settings import Settings
>>> loop = OfflineLoop(Settings(signing_key="k" * 16, processing={"publish_every": 50}),
...                    label_delay=10)
>>> steps = list(loop.run([({"x": float(i % 2)}, i % 2 == 1) for i in range(300)]))
>>> len(steps), steps[-1].correct
(300, True)
"""

from __future__ import annotations

import pickle
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from driftway.logic.features import EntityState, featurize
from driftway.logic.learning import Learner, StepResult
from driftway.logic.models import coerce_label, make_model, predict_explained
from driftway.schemas.events import LabelValue, Output, RawEvent, TrainingExample, label_text
from driftway.settings import Settings


@dataclass
class Step:
    """One event: what the champion answered, whether it was right, what the learner did."""

    index: int
    champion: str
    prediction: LabelValue | None
    label: LabelValue
    correct: bool
    result: StepResult


class OfflineLoop:
    """Serve, wait for the label, learn — in one process, in event order."""

    def __init__(self, settings: Settings, label_delay: int = 0) -> None:
        self.learner = Learner(settings)
        self.label_delay = label_delay
        self.live = settings.processing.live_updates
        self.served: dict[str, Any] = {}
        meta, artifact, _deployment = self.learner.bootstrap()
        self.served[meta.version] = pickle.loads(artifact)  # noqa: S301 - our own bytes
        self.offset = 0

    def answer(self, x: dict[str, float]) -> tuple[str, dict[str, Output]]:
        """The champion's version and every deployed version's output for one event."""
        deployment = self.learner.deployment
        assert deployment is not None
        outputs = {}
        for version in (deployment.champion, *deployment.shadows):
            line = self.learner.line_of(version) if self.live else None
            a = predict_explained(line.model if line else self.served[version], x, 0)
            outputs[version] = Output(prediction=a.prediction, score=a.score, proba=a.proba)
        return deployment.champion, outputs

    def learn(self, event_id: str, x: dict[str, float], y: LabelValue, champion: str,
              outputs: dict[str, Output]) -> StepResult:
        example = TrainingExample(event_id=event_id, model=self.learner.model_name,
                                  version=champion, features=x, label=y,
                                  served=outputs[champion].prediction,
                                  score=outputs[champion].score, outputs=outputs)
        result = self.learner.step(self.offset, example)
        self.offset += 1
        for published in result.published:
            self.served[published.meta.version] = pickle.loads(published.artifact)  # noqa: S301
        return result

    def run(self, stream: Iterable[tuple[dict[str, float], LabelValue]]) -> Iterator[Step]:
        """Each event's step, yielded when its label has been learned from."""
        waiting: deque[tuple[int, dict[str, float], LabelValue, str, dict[str, Output]]] = deque()
        index = 0
        for index, (x, y) in enumerate(stream):
            champion, outputs = self.answer(x)
            waiting.append((index, x, y, champion, outputs))
            if len(waiting) > self.label_delay:
                yield self._settle(*waiting.popleft())
        while waiting:
            yield self._settle(*waiting.popleft())

    def _settle(self, index: int, x: dict[str, float], y: LabelValue, champion: str,
                outputs: dict[str, Output]) -> Step:
        result = self.learn(f"e{index}", x, y, champion, outputs)
        prediction = outputs[champion].prediction
        return Step(index, champion, prediction, y, label_text(prediction) == label_text(y),
                    result)


def raw_stream(events: Iterable[tuple[dict[str, Any], LabelValue]],
               ) -> Iterator[tuple[dict[str, float], LabelValue]]:
    """(raw event, label) pairs → (features, label) as the scoring processor computes them,
    with each entity's running state.

    >>> e = {"event_id": "e1", "entity_id": "u", "ts": 1_000, "data": {"amount": 2}}
    >>> [x for x, _ in raw_stream([(e, True), ({**e, "ts": 3_000}, False)])][1]
    {'amount': 2.0, 'entity.events': 2.0, 'entity.seconds_since_last': 2.0}
    """
    states: dict[str, EntityState] = {}
    for raw, label in events:
        event = RawEvent.model_validate(raw)
        vector, states[event.entity_id] = featurize(event, states.get(event.entity_id), 0.0)
        yield vector.features, label


def learning_in_process(stream: Iterable[tuple[dict[str, float], LabelValue]],
                        settings: Settings, label_delay: int, model: Any = None,
                        ) -> Iterator[LabelValue | None]:
    """Each event's prediction by the same model learning in this process with the same label
    delay — predict event i, then learn the label of event i − label_delay — with no policy and
    no pipeline latency: the reference what the pipeline serves is measured against (the
    fidelity benchmark, the demo's summary). `model`: one already trained (default: a fresh
    one, as the learner makes it).

    >>> from driftway.settings import Settings
    >>> stream = [({"x": float(i % 2)}, i % 2 == 1) for i in range(400)]
    >>> predictions = list(learning_in_process(stream, Settings(), label_delay=5))
    >>> predictions[-1], len(predictions)
    (True, 400)
    """
    p = settings.processing
    if model is None:
        model = make_model(p.model, max_categories=p.max_categories, max_features=p.max_features)
    template = make_model(p.model)  # as the learner coerces labels
    waiting: deque[tuple[dict[str, float], LabelValue]] = deque()
    for x, y in stream:
        yield predict_explained(model, x, 0).prediction
        waiting.append((x, y))
        if len(waiting) > label_delay:
            seen, label = waiting.popleft()
            model.learn_one(seen, coerce_label(template, label))
