"""`driftway experiment`: try candidate models on the stored history, beside what was served.

The stored joined examples of one model line — the ClickHouse training table, or the training
topic read with read_committed — are replayed through each candidate (a model spec, as
``processing.model`` takes) prequentially, in the order they were served and labelled, so each
candidate learns exactly the labels that had arrived before each event was served
(``driftway.logic.experiment``). Candidates run in parallel processes (``--jobs``). The
champion's own served answers over the same events are scored the same way, for comparison.

The figures are printed, written to the ``experiments`` topic (the sink lands them in the
``experiments`` table; the report charts them), and with ``--shadow-best`` the winner — trained
on every example in training order, with that lineage — is published to the registry and
deployed as a shadow: the learner then judges it on live traffic like any other.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from driftway.app.context import settings_of
from driftway.app.explain import label_of, sql_string
from driftway.app.models_cli import deliver, echo_json, format_option, open_registry, require_kafka
from driftway.logic.experiment import (
    HIGHER_IS_BETTER,
    History,
    Outcome,
    best,
    check_binary,
    run_candidate,
    served_outcome,
    trained,
)
from driftway.logic.models import coerce_label, is_classifier, make_model
from driftway.schemas.events import ExperimentResult, LabelValue

if TYPE_CHECKING:
    from driftway.settings import Settings

console = Console()

#: Rows read from the training table per query (each query stays under query.max_rows).
PAGE = 100_000


@dataclass(frozen=True)
class Window:
    """Which stored examples to replay: one model line's, served in [since, until)."""

    line: str
    since: float | None = None
    until: float | None = None

    def holds(self, predicted_at: float | None) -> bool:
        if self.since is None and self.until is None:
            return True
        if predicted_at is None:
            return False
        return ((self.since is None or predicted_at >= self.since)
                and (self.until is None or predicted_at < self.until))


class Instant(click.ParamType):
    """A time: ISO 8601 (UTC unless it says otherwise) or seconds since the epoch."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return float(value)
        except ValueError:
            pass
        try:
            ts = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is neither an ISO 8601 time (2026-12-01T10:00) nor seconds "
                      "since the epoch", param, ctx)
        return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


class HistoryRows:
    """Builds a History from stored rows: labels and the champion's answers as values."""

    def __init__(self, template: Any, classifier: bool) -> None:
        self.template, self.classifier = template, classifier
        self.xs: list[dict[str, float]] = []
        self.ys: list[Any] = []
        self.served: list[float | None] = []
        self.served_right: list[bool | None] = []
        self.times: list[tuple[float, float] | None] = []
        self.offsets: list[int] = []
        self.refused = 0

    def add(self, offset: int, features: dict[str, float], label: LabelValue,
            served: LabelValue | None, score: float | None, predicted_at: float | None,
            labelled_at: float | None) -> None:
        try:
            y = coerce_label(self.template, label)
        except ValueError:  # a label the line cannot learn: the learner refused it too
            self.refused += 1
            return
        self.offsets.append(offset)
        self.xs.append(features)
        self.ys.append(label)
        value, answer = self.served_answer(served, score)
        self.served.append(value)
        self.served_right.append(None if value is None or not self.classifier else answer == y)
        self.times.append(None if predicted_at is None or labelled_at is None
                          else (predicted_at, labelled_at))

    def served_answer(self, served: LabelValue | None, score: float | None
                      ) -> tuple[float | None, LabelValue | None]:
        """P(positive) the champion gave (binary classifiers: its score is the probability of
        the class it predicted), or the value it predicted (regressors); and its answer as the
        line learns labels. (None, None) when it gave none."""
        if served is None or served == "":
            return None, None
        try:
            answer = coerce_label(self.template, served)
        except ValueError:
            return None, None
        if not self.classifier:
            return float(answer), answer
        if score is None:
            return (1.0 if answer else 0.0), answer
        return (score if answer else 1.0 - score), answer

    def history(self) -> History:
        if self.refused:
            click.echo(f"{self.refused:,} stored examples have a label the candidates cannot "
                       "learn: left out, as the learner left them out", err=True)
        return History(self.xs, self.ys, self.served, self.times, self.offsets,
                       self.served_right)


def table_history(settings: Settings, window: Window, rows: HistoryRows) -> History:
    """The line's examples from the training table, in offset order, page by page."""
    from driftway.app.query import query

    where = [f"_topic = {sql_string(settings.topic('training'))}", "_partition = 0",
             f"model = {sql_string(window.line)}"]
    if window.since is not None:
        where.append(f"toUnixTimestamp64Micro(predicted_at) >= {int(window.since * 1e6)}")
    if window.until is not None:
        where.append(f"toUnixTimestamp64Micro(predicted_at) < {int(window.until * 1e6)}")
    after = -1
    while True:
        page = query(settings, "SELECT _offset, features, label, served, score, "
                               "toUnixTimestamp64Micro(predicted_at) / 1e6, "
                               "toUnixTimestamp64Micro(labelled_at) / 1e6 FROM training "
                               f"WHERE {' AND '.join(where)} AND _offset > {after} "
                               f"ORDER BY _offset LIMIT {PAGE}").rows
        for offset, features, label, served, score, predicted_at, labelled_at in page:
            rows.add(int(offset), {str(k): float(v) for k, v in features.items()},
                     label_of(label), label_of(served) if served else None, score,
                     predicted_at, labelled_at)
        if len(page) < PAGE:
            return rows.history()
        after = int(page[-1][0])


def topic_history(settings: Settings, window: Window, rows: HistoryRows) -> History:
    """The line's examples from the training topic (read_committed), in offset order."""
    from driftway.io.kafka import read_to_end
    from driftway.schemas.events import InvalidRecord, TrainingExample, decode_training

    for msg in read_to_end(settings, settings.topic("training"), [0], timeout=300,
                           purpose="experiment"):
        try:
            record = decode_training(msg.value() or b"")
        except InvalidRecord:
            continue  # the learner's dead letter, not an example
        if (isinstance(record, TrainingExample) and record.model == window.line
                and window.holds(record.predicted_at)):
            rows.add(msg.offset(), record.features, record.label, record.served, record.score,
                     record.predicted_at, record.labelled_at)
    return rows.history()


def load_history(settings: Settings, window: Window, source: str,
                 template: Any, classifier: bool) -> tuple[History, str]:
    """The examples to replay and where they came from: the table, or the topic when the table
    holds none of them (``auto``) or when asked."""
    from driftway.app.query import QueryError

    if source in ("auto", "table"):
        try:
            history = table_history(settings, window, HistoryRows(template, classifier))
        except QueryError as exc:
            if source == "table":
                raise click.ClickException(f"reading the training table failed: {exc}") from None
            history = History([], [], [], [])
        if len(history) or source == "table":
            return history, "table"
    require_kafka(settings, ("training",))
    try:
        return topic_history(settings, window, HistoryRows(template, classifier)), "topic"
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from None


def run_all(specs: list[str], history: History, label_delay: int, jobs: int) -> list[Outcome]:
    """Every candidate's outcome, in the order given; `jobs` processes side by side."""
    if jobs <= 1 or len(specs) == 1:
        return [run_candidate(spec, history, label_delay) for spec in specs]
    # spawn: a fresh interpreter per worker, whatever threads this process has started
    # (librdkafka's, the embedded ClickHouse's) — fork would copy their locks mid-use.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        return list(pool.map(run_candidate, specs, [history] * len(specs),
                             [label_delay] * len(specs)))


def deploy_shadow(settings: Settings, line: str, winner: Outcome, history: History,
                experiment: str) -> str:
    """Publish the winner, trained on every example of `history`, and deploy it as a shadow of
    `line`'s champion; its version id."""
    from driftway.io.keys import with_signing_key
    from driftway.logic import artifacts
    from driftway.logic.registry import next_deployment, publish_version, write_deployment
    from driftway.schemas.events import TrainingOffsets

    with open_registry(settings) as registry:
        current = registry.deployments.get(line)
        if current is None:
            raise click.ClickException(f"model {line!r} has no deployment to add a shadow to; "
                                       "start the pipeline first (`driftway up`)")
        model = trained(winner.candidate, history)
        meta, artifact = artifacts.build_version(
            line, model, with_signing_key(settings).signing_key_bytes, parent=None,
            reason=f"experiment {experiment}: {winner.candidate}, best of the run, trained on "
                   f"{len(history)} stored examples",
            training_offsets=TrainingOffsets(topic=settings.topic("training"),
                                             start=history.offsets[0],
                                             end=history.offsets[-1] + 1),
            examples_seen=len(history), metrics=winner.metrics,
            hyperparameters={"spec": winner.candidate, "estimator": repr(model),
                             "kind": "classifier" if is_classifier(model) else "regressor"},
            chunk_bytes=settings.processing.artifact_chunk_bytes)
        known = meta.version in registry.versions  # the same state, published before
        deployed = meta.version == current.champion or meta.version in current.shadows
        deployment = next_deployment(current, line, "shadow", meta.version,
                                     f"best of experiment {experiment}", by="cli")
    if deployed:
        click.echo(f"{meta.version[:12]}, the best, is deployed already ("
                   f"{'champion' if meta.version == current.champion else 'shadow'}): "
                   "nothing changed", err=True)
        return meta.version

    def write(emit: Any) -> None:
        if not known:  # a version's metadata is written once: its lineage stays as it was
            publish_version(emit, settings, meta, artifact)
        write_deployment(emit, settings, deployment)

    deliver(settings, write)
    return meta.version


def results(experiment: str, line: str, source: str, history: History, served: Outcome | None,
            outcomes: list[Outcome], winner: Outcome | None,
            shadow: str | None) -> list[ExperimentResult]:
    """The experiment's records: the champion's served figures first, then each candidate."""
    times = [t[0] for t in history.times if t is not None]
    common = {"ts": datetime.now(UTC), "experiment": experiment, "model": line,
              "source": source,
              "first_served": datetime.fromtimestamp(min(times), UTC) if times else None,
              "last_served": datetime.fromtimestamp(max(times), UTC) if times else None}
    out = []
    if served is not None:
        out.append(ExperimentResult(**common, candidate="served", role="served",
                                    examples=served.examples, metrics=served.metrics))
    for o in outcomes:
        out.append(ExperimentResult(
            **common, candidate=o.candidate, role="candidate", examples=o.examples,
            metrics=o.metrics, examples_per_s=o.examples_per_s, best=o is winner,
            shadow=shadow if o is winner else None))
    return out


def print_results(records: list[ExperimentResult], metric: str) -> None:
    names = [m for m in HIGHER_IS_BETTER if any(m in r.metrics for r in records)]
    table = Table(box=box.SIMPLE_HEAD, title=f"experiment {records[0].experiment} "
                  f"({records[0].model}, from the training {records[0].source})")
    table.add_column("contender", overflow="fold", min_width=20)
    for column in ("examples", *names, "examples/s"):
        table.add_column(column, justify="right", no_wrap=True)
    for r in records:
        name = "served (champion)" if r.role == "served" else r.candidate
        if r.best:
            name += f"\n[bold]← best {metric}[/bold]" + (f", shadow {r.shadow[:12]}"
                                                        if r.shadow else "")
        table.add_row(name, f"{r.examples:,}",
                      *(f"{r.metrics[m]:.4f}" if m in r.metrics else "—" for m in names),
                      f"{r.examples_per_s:,.0f}" if r.examples_per_s else "")
    console.print(table)


@click.command()
@click.option("--model", "specs", multiple=True, required=True, metavar="SPEC",
              help="A candidate, as processing.model takes it (a built-in name, "
                   "package.module:factory, or a River expression); repeat for several.")
@click.option("--for", "line", default=None, metavar="MODEL",
              help="The model line whose stored examples to replay [default: "
                   "processing.model_name].")
@click.option("--from", "since", type=Instant(), default=None,
              help="Only examples served at or after this time (ISO 8601, UTC by default).")
@click.option("--to", "until", type=Instant(), default=None,
              help="Only examples served before this time.")
@click.option("--source", type=click.Choice(["auto", "table", "topic"]), default="auto",
              show_default=True, help="Where the examples come from: the training table, the "
              "training topic, or the table when it holds any (auto).")
@click.option("--metric", type=click.Choice(["auto", *HIGHER_IS_BETTER]), default="auto",
              show_default=True, help="What picks the best: log_loss for classifiers, rmse for "
              "regressors (auto).")
@click.option("--label-delay", type=click.IntRange(min=0), default=0, show_default=True,
              help="For examples stored without their serving and labelling times: how many "
                   "examples each label arrives after its event.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Candidates replayed side by side [default: one per core, at most one per "
                   "candidate].")
@click.option("--shadow-best", is_flag=True, default=False,
              help="Publish the best candidate, trained on every example, and deploy it as a "
                   "shadow of the champion.")
@format_option
@click.pass_context
def experiment(ctx: click.Context, specs: tuple[str, ...], line: str | None,
               since: float | None, until: float | None, source: str, metric: str,
               label_delay: int, jobs: int | None, shadow_best: bool, fmt: str) -> None:
    """Replay the stored examples through each candidate model, prequentially with the label
    delay they had, and compare them with what the champion served."""
    settings = settings_of(ctx)
    line = line or settings.processing.model_name
    try:
        templates = [make_model(spec) for spec in specs]
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    kinds = {is_classifier(t) for t in templates}
    if len(kinds) > 1:
        raise click.ClickException("the candidates mix classifiers and regressors: compare "
                                   "models of one kind")
    classifier = kinds.pop()
    metric = ("log_loss" if classifier else "rmse") if metric == "auto" else metric
    if (metric in ("mae", "rmse")) == classifier:
        raise click.ClickException(f"{metric} does not score "
                                   f"{'classifiers' if classifier else 'regressors'}")
    if shadow_best:
        require_kafka(settings, ("model-versions", "model-artifacts", "deployments"))
    window = Window(line, since, until)
    history, used = load_history(settings, window, source, templates[0], classifier)
    if not len(history):
        raise click.ClickException(
            f"no stored examples of model {line!r}{' in that time range' if since or until else ''}"
            f" in the training {used}: are labels flowing (`driftway status`)?")
    try:
        check_binary(templates[0], history.ys)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    outcomes = run_all(list(specs), history, label_delay,
                       jobs or min(len(specs), os.cpu_count() or 1))
    served = served_outcome(history, classifier)
    winner = best(outcomes, metric)
    experiment_id = uuid.uuid4().hex[:12]
    shadow = (deploy_shadow(settings, line, winner, history, experiment_id)
              if shadow_best and winner is not None else None)
    records = results(experiment_id, line, used, history, served, outcomes, winner, shadow)
    if fmt == "json":
        echo_json([r.model_dump(mode="json") for r in records])
    else:
        print_results(records, metric)
    try:  # printed first: figures that cannot be stored are still seen
        require_kafka(settings, ("experiments",))
        deliver(settings, lambda emit: [emit(settings.topic("experiments"), experiment_id,
                                             r.to_bytes()) for r in records])
    except click.ClickException as exc:
        raise click.ClickException(f"the results are not stored: {exc.message}") from None
