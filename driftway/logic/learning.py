"""Learning in the training order: prequential evaluation, concept drift, the policy, lines that
learn and publish versions. Pure: records in, results out; the learner processor
(``driftway.streams.learner``) does the Kafka.

Prequential, in the training topic's total order: for each joined example it first evaluates what
every version actually served for that event (champion and shadows; sliding-window metrics per
version), then each deployed line learns from it. Every ``publish_every`` examples, on a
``PublishRequest`` in the training order, or when asked by a drift signal, a line publishes an
immutable, signed version that names its parent and the training offsets it covers, and (with
``auto_update``) is deployed in its predecessor's place.
"""

from __future__ import annotations

import math
import pickle
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from river import metrics

from driftway.logic import artifacts
from driftway.logic.drift import ConceptDriftDetector
from driftway.logic.models import is_classifier, make_model
from driftway.logic.policy import Decision, Policy
from driftway.logic.registry import next_deployment, update_deployment
from driftway.logic.replay import learnable
from driftway.schemas.events import (
    Deployment,
    DriftEvent,
    LabelValue,
    LineState,
    Metric,
    ModelVersion,
    Output,
    PublishRequest,
    TrainingExample,
    TrainingOffsets,
    label_text,
)
from driftway.settings import Settings


class WindowMean:
    """The mean of the last `window` values, in constant time per value (River's Rolling
    reverts a metric per value, several times the cost). The running sum is summed afresh once
    per window, so rounding errors do not pile up.

    >>> m = WindowMean(3)
    >>> for v in (1.0, 2.0, 3.0, 10.0):
    ...     m.update(v)
    >>> m.get()
    5.0
    """

    def __init__(self, window: int) -> None:
        self.values: deque[float] = deque(maxlen=window)
        self.total = 0.0
        self._updates = 0

    def update(self, value: float) -> None:
        values = self.values
        if len(values) == values.maxlen:
            self.total -= values[0]
        values.append(value)
        self.total += value
        self._updates += 1
        if self._updates % (values.maxlen or 1) == 0:
            self.total = math.fsum(values)

    def get(self) -> float:
        return self.total / len(self.values) if self.values else 0.0


class RootWindowMean(WindowMean):
    """The root of the window's mean (RMSE over squared errors)."""

    def get(self) -> float:
        return math.sqrt(max(0.0, super().get()))


_P_MIN = 1e-15  # River's LogLoss clamps probabilities to [1e-15, 1 - 1e-15]


class Evaluation:
    """Prequential metrics of one version over a sliding window of labelled examples.

    >>> e = Evaluation(window=10)
    >>> e.update(True, Output(prediction=True, score=0.9, proba={"true": 0.9, "false": 0.1}))
    >>> e.update(False, Output(prediction=True, score=0.6, proba={"true": 0.6, "false": 0.4}))
    >>> {k: round(v, 3) for k, v in e.snapshot().items()}
    {'accuracy': 0.5, 'log_loss': 0.511, 'roc_auc': 1.0}
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.n = 0
        self._metrics: dict[str, Any] = {}

    def _metric(self, name: str, kind: type[WindowMean] = WindowMean) -> WindowMean:
        metric = self._metrics.get(name)
        if metric is None:
            metric = self._metrics[name] = kind(self.window)
        return metric

    def update(self, y: LabelValue, output: Output) -> None:
        """Score one served output against the truth."""
        self.n += 1
        if output.prediction is None:
            return
        if output.proba is None:  # a regressor
            error = float(y) - float(output.prediction)  # type: ignore[arg-type]
            self._metric("mae").update(abs(error))
            self._metric("rmse", RootWindowMean).update(error * error)
            return
        self._metric("accuracy").update(
            float(label_text(y) == label_text(output.prediction)))
        if isinstance(y, bool):
            p_true = output.proba.get("true", 1.0 - output.proba.get("false", 0.5))
            p = min(max(p_true if y else 1.0 - p_true, _P_MIN), 1.0 - _P_MIN)
            self._metric("log_loss").update(-math.log(p))
            roc = self._metrics.get("roc_auc")
            if roc is None:  # River's own sliding-window AUC
                roc = self._metrics["roc_auc"] = metrics.RollingROCAUC(window_size=self.window)
            roc.update(y, {True: p_true, False: 1.0 - p_true})

    def snapshot(self) -> dict[str, float]:
        return {name: float(m.get()) for name, m in self._metrics.items()}


@dataclass
class Line:
    """A deployed model that keeps learning: its slot in the deployment and its progress."""

    id: int
    slot: str  # the deployed version this line stands for (its latest version once deployed)
    head: str  # the version its state descends from (last published or loaded)
    model: Any
    start: int  # training offset where learning since `head` began
    seen: int  # examples learned over the whole lineage
    since: int = 0  # examples learned since `head`
    versions: set[str] = field(default_factory=set)  # every version it has served as
    detector: ConceptDriftDetector | None = None
    offsets: deque[int] = field(default_factory=lambda: deque(maxlen=16_384))


@dataclass
class Published:
    """A version a line just published, and the line's slot before it."""

    meta: ModelVersion
    artifact: bytes
    replaces: str
    line: Line | None = None


@dataclass
class StepResult:
    metrics: list[Metric] = field(default_factory=list)
    published: list[Published] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)
    drift: list[DriftEvent] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)  # reasons this record was refused


class Learner:
    """Evaluation, drift, policy and learning over the training order, without Kafka."""

    def __init__(self, settings: Settings, model_name: str | None = None) -> None:
        p = settings.processing
        self.model_name = model_name or p.model_name
        self.spec = p.model
        self.caps = {"max_categories": p.max_categories, "max_features": p.max_features}
        self.key = settings.signing_key_bytes
        self.topic = settings.topic("training")
        self.publish_every = p.publish_every
        self.metrics_window = p.metrics_window
        self.metrics_every = p.metrics_every
        self.chunk_bytes = p.artifact_chunk_bytes
        self.auto_update = p.auto_update
        self.drift = settings.drift.for_model(self.model_name)
        self.policy_settings = settings.policy
        self.policy = Policy(settings.policy.alpha, settings.policy.min_labels,
                             settings.policy.max_labels)
        self.template = make_model(self.spec)  # how labels are coerced for this model
        self.classifier = is_classifier(self.template)
        self.lines: list[Line] = []
        self.deployment: Deployment | None = None
        self.evaluations: dict[str, Evaluation] = {}
        self.emit_metrics_from = 0  # replayed examples were evaluated before a crash
        self.recent: deque[tuple[int, dict[str, float], LabelValue]] = deque(
            maxlen=settings.policy.challenger_buffer)
        self._line_ids = 0

    # -- lines and versions ------------------------------------------------------------------

    def hyperparameters(self, model: Any) -> dict[str, Any]:
        return {"spec": self.spec, "estimator": repr(model),
                "kind": "classifier" if is_classifier(model) else "regressor"}

    def first_version(self) -> tuple[ModelVersion, bytes, Any]:
        """A fresh model from the configured factory: version zero, covering no offsets."""
        model = make_model(self.spec, **self.caps)
        meta, artifact = artifacts.build_version(
            self.model_name, model, self.key, parent=None, reason=f"initial: {self.spec}",
            training_offsets=TrainingOffsets(topic=self.topic, start=0, end=0),
            hyperparameters=self.hyperparameters(model), chunk_bytes=self.chunk_bytes)
        return meta, artifact, pickle.loads(artifact)  # noqa: S301 - see _publish

    def bootstrap(self) -> tuple[ModelVersion, bytes, Deployment]:
        """Version zero as the first champion: what a learner with no deployment starts from."""
        meta, artifact, model = self.first_version()
        self.add_line(meta.version, meta, model, start=0)
        self.deployment = next_deployment(None, self.model_name, "init", meta.version,
                                          by="learner", reason=f"first version of {self.spec}")
        return meta, artifact, self.deployment

    def add_line(self, slot: str, meta: ModelVersion, model: Any, start: int) -> Line:
        self._line_ids += 1
        line = Line(id=self._line_ids, slot=slot, head=meta.version, model=model, start=start,
                    seen=meta.examples_seen, versions={slot, meta.version},
                    detector=self._detector())
        self.lines.append(line)
        return line

    def _detector(self) -> ConceptDriftDetector:
        d = self.drift
        return ConceptDriftDetector(d.concept_detector, dict(d.concept_params),
                                    cooldown=d.concept_cooldown, warmup=d.concept_warmup)

    def follow(self, deployment: Deployment) -> None:
        """Someone else (a person, the CLI) changed the deployment: the policy steps aside."""
        self.deployment = deployment
        self.policy.reset()

    def line_of(self, version: str) -> Line | None:
        return next((line for line in self.lines if version in line.versions), None)

    @property
    def champion(self) -> Line | None:
        if self.deployment is None:
            return None
        return next((ln for ln in self.lines if ln.slot == self.deployment.champion), None)

    def line_states(self, position: int) -> list[LineState]:
        """Every line's model as it is now, signed: its release plus what it learned since, up
        to the training offset `position` (the next one to read)."""
        return [artifacts.line_state(self.model_name, line.slot, line.head, line.start,
                                     max(position, line.start), line.seen, line.model, self.key)
                for line in self.lines]

    # -- the step -----------------------------------------------------------------------------

    def step(self, offset: int, record: TrainingExample | PublishRequest) -> StepResult:
        """Evaluate, watch for drift, apply the policy, then learn from one training record."""
        result = StepResult()
        if record.model != self.model_name:
            return result
        if isinstance(record, PublishRequest):
            self._publish_all(offset, record.reason, result)
            return result
        try:  # the rule `driftway explain` rebuilds states by
            example = learnable(record, self.model_name, self.template)
        except ValueError as exc:
            result.dead.append(f"learner: {exc}")
            return result
        assert example is not None
        x, y = example
        if offset >= self.emit_metrics_from:
            outputs = record.outputs or {record.version: Output(prediction=record.served,
                                                               score=record.score)}
            losses: dict[int, float] = {}
            for version, output in outputs.items():
                result.metrics += self._evaluate(version, y, output)
                line = self.line_of(version)
                if line is not None and offset >= line.start:
                    losses[line.id] = self._loss(y, output)
                    self._watch(line, version, offset, record, y, output, result)
            if self.policy_settings.enabled:
                served_by = self.line_of(record.version)
                decision = self.policy.observe(losses, served_by.id if served_by else None)
                if decision is not None:
                    self._decide(decision, offset, result)
        self.recent.append((offset, x, y))
        for line in list(self.lines):
            if offset < line.start:
                continue  # replay: this line's latest version already covers it
            line.model.learn_one(x, y)
            line.since += 1
            line.seen += 1
            if line.since >= self.publish_every:
                self._publish_line(line, offset, f"{self.publish_every} examples", result)
        return result

    def _loss(self, y: LabelValue, output: Output) -> float:
        """The 0/1 error of a classifier's answer; a regressor's squared error. Bounded, so that
        to the policy's test a confident mistake costs one error, not the up to 34 of a log loss;
        and the error served, not a probability score: measured on bench/adaptation.py, the
        Brier score preferred a fresh tree's confident probabilities to a re-learnt one that was
        right more often."""
        if not self.classifier:
            return (float(y) - float(output.prediction or 0.0)) ** 2  # type: ignore[arg-type]
        return float(output.prediction != y)

    def _watch(self, line: Line, version: str, offset: int, record: TrainingExample,
               y: LabelValue, output: Output, result: StepResult) -> None:
        """Concept drift on the line's error stream; on the champion, publish and challenge."""
        assert line.detector is not None
        error = (float(output.prediction != y) if self.classifier
                 else self._loss(y, output))
        line.offsets.append(offset)
        alarm = line.detector.update(error)
        if alarm is None:
            return
        back = min(len(line.offsets), line.detector.n - alarm.change_point + 1)
        change_offset = line.offsets[-back] if back > 0 else offset
        is_champion = line is self.champion
        result.drift.append(DriftEvent(
            ts=datetime.now(UTC), kind="concept", detector=alarm.detector,
            model=self.model_name, version=version, statistic=alarm.statistic,
            threshold=alarm.threshold, p_value=alarm.p_value, event_id=record.event_id,
            source=self.topic, partition=0, offset=offset, change_point=change_offset,
            detail=f"{'champion' if is_champion else 'shadow'} error stream"))
        if not is_champion:
            return
        self._publish_line(line, offset, f"drift: {alarm.detector} at offset {offset}", result)
        if not self.policy_settings.enabled:
            return
        if self.policy.on_champion_drift(offset) == "restart_challenger":
            self._drop_judged(offset, change_offset, alarm.detector, result)
        self._start_challenger(line, offset, change_offset, alarm.detector, result)

    # -- policy actions -----------------------------------------------------------------------

    def _start_challenger(self, champion: Line, offset: int, change_offset: int,
                          detector: str, result: StepResult) -> None:
        model = make_model(self.spec, **self.caps)
        since = [(o, x, y) for o, x, y in self.recent if o >= change_offset]
        if self.policy_settings.challenger == "change_point":
            for _o, x, y in since:
                model.learn_one(x, y)
        trained = len(since) if self.policy_settings.challenger == "change_point" else 0
        start = since[0][0] if trained else offset
        meta, artifact = artifacts.build_version(
            self.model_name, model, self.key, parent=None,
            reason=f"challenger: fresh {self.spec} after {detector} drift on "
                   f"{champion.slot[:12]} at offset {offset}, trained on {trained} examples "
                   f"since offset {change_offset}",
            training_offsets=TrainingOffsets(topic=self.topic, start=start, end=offset),
            examples_seen=trained, hyperparameters=self.hyperparameters(model),
            chunk_bytes=self.chunk_bytes)
        # It learns the current example with the other lines, right after this.
        line = self.add_line(meta.version, meta, pickle.loads(artifact), start=offset)  # noqa: S301
        result.published.append(Published(meta, artifact, replaces="", line=None))
        self._deploy(next_deployment(self.deployment, self.model_name, "shadow", meta.version,
                                     by="policy", reason=meta.reason), result)
        self.policy.challenger_started(champion.id, line.id)

    def _drop_judged(self, offset: int, change_offset: int, detector: str,
                     result: StepResult) -> None:
        """The champion drifted while a shadow was judged against it: drop that shadow (the
        challenger, or on probation the predecessor) and step the policy back to steady."""
        state = self.policy.state
        judged = next((ln for ln in self.lines if ln.id == self.policy.candidate), None)
        self.policy.reset()
        if judged is None or self.deployment is None \
                or judged.slot not in self.deployment.shadows:
            return
        role = "challenger" if state == "challenging" else "predecessor on probation"
        self._deploy(next_deployment(
            self.deployment, self.model_name, "unshadow", judged.slot, by="policy",
            reason=f"champion drifted again ({detector} at offset {offset}) while its {role} "
                   f"{judged.slot[:12]} was judged: dropped, a challenger starts from offset "
                   f"{change_offset}"), result)

    def _decide(self, decision: Decision, offset: int, result: StepResult) -> None:
        by_id = {line.id: line for line in self.lines}
        incumbent = by_id.get(decision.incumbent)
        candidate = by_id.get(decision.candidate)
        if decision.action == "promote" and candidate and incumbent:
            d = next_deployment(self.deployment, self.model_name, "promote", candidate.slot,
                                by="policy", reason=decision.reason)
            # The predecessor stays as a shadow while the promoted version is on probation.
            d = d.model_copy(update={"shadows": [*d.shadows, incumbent.slot]})
            self._deploy(d, result)
            self.policy.promoted()
            return
        if self.deployment is None:
            return
        if decision.action == "rollback" and candidate:
            d = next_deployment(self.deployment, self.model_name, "rollback", candidate.slot,
                                by="policy", reason=decision.reason)
        elif decision.action in ("drop_challenger", "retire_predecessor") and candidate \
                and candidate.slot in self.deployment.shadows:
            d = next_deployment(self.deployment, self.model_name, "unshadow", candidate.slot,
                                by="policy", reason=decision.reason)
        else:
            return
        self._deploy(d, result)

    def _deploy(self, deployment: Deployment, result: StepResult) -> None:
        """Apply a deployment of the learner's own: lines no longer deployed stop learning."""
        self.deployment = deployment
        deployed = {deployment.champion, *deployment.shadows}
        self.lines = [line for line in self.lines if line.slot in deployed]
        result.deployments.append(deployment)

    # -- publication --------------------------------------------------------------------------

    def _publish_all(self, offset: int, reason: str, result: StepResult) -> None:
        for line in list(self.lines):
            if offset >= line.start and line.since:
                self._publish_line(line, offset, reason, result)

    def _publish_line(self, line: Line, offset: int, reason: str, result: StepResult) -> None:
        if not line.since:
            return
        published = self._publish(line, offset, reason)
        result.published.append(published)
        if self.auto_update and self.deployment is not None:
            updated = update_deployment(self.deployment, published.replaces,
                                        published.meta.version, f"{reason} (auto_update)")
            if updated is not None:
                line.slot = published.meta.version
                line.versions.add(line.slot)
                self.deployment = updated
                result.deployments.append(updated)

    def _evaluate(self, version: str, y: LabelValue, output: Output) -> list[Metric]:
        evaluation = self.evaluations.get(version)
        if evaluation is None:
            evaluation = self.evaluations[version] = Evaluation(self.metrics_window)
        evaluation.update(y, output)
        if evaluation.n % self.metrics_every:
            return []
        ts = datetime.now(UTC)
        return [Metric(ts=ts, model=self.model_name, version=version, metric=name, value=value,
                       window=min(evaluation.n, self.metrics_window), examples=evaluation.n)
                for name, value in evaluation.snapshot().items()]

    def _publish(self, line: Line, offset: int, reason: str) -> Published:
        head_metrics = self.evaluations.get(line.slot)
        meta, artifact = artifacts.build_version(
            self.model_name, line.model, self.key, parent=line.head, reason=reason,
            training_offsets=TrainingOffsets(topic=self.topic, start=line.start, end=offset + 1),
            examples_seen=line.seen, hyperparameters=self.hyperparameters(line.model),
            metrics=head_metrics.snapshot() if head_metrics else {},
            chunk_bytes=self.chunk_bytes)
        published = Published(meta, artifact, replaces=line.slot, line=line)
        line.head, line.start, line.since = meta.version, offset + 1, 0
        # Go on from the artifact itself, as a recovering learner would: pickles are not
        # canonical (object sharing, set layout), so only this keeps later versions byte-equal.
        line.model = pickle.loads(artifact)  # noqa: S301 - our own bytes
        self._forget_old_evaluations()
        return published

    def _forget_old_evaluations(self, keep: int = 64) -> None:
        """Bound the per-version metric state: versions no line serves any more go first."""
        live = {v for line in self.lines for v in (line.head, line.slot)}
        for version in list(self.evaluations):
            if len(self.evaluations) <= keep:
                return
            if version not in live:
                del self.evaluations[version]
