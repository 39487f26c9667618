"""Driftway pipeline benchmark: bare River vs. the whole stack, in one run.

    .venv/bin/python bench/pipeline.py [--events N] [--rate R] [--seconds S]

Measures, on the demo's loan-application data:

1. bare River: the served model (StandardScaler | LogisticRegression) doing predict_proba_one +
   learn_one per event, featurised like the pipeline — the ceiling for one core;
2. end-to-end throughput, raw event → prediction → ClickHouse, on a fresh local stack (broker,
   features, scoring, sink as separate processes), without and with labels;
3. produce-to-prediction latency at a fixed input rate, seen by a PredictionSubscriber;
4. peak memory (VmHWM) of every process of the stack and of this one.

Prints a table and writes bench/results/pipeline-<timestamp>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
from record import save_record, start_record  # bench/record.py, beside this file
from rich.console import Console
from rich.table import Table

from driftway.app.demo import DemoPlan, loan_applications
from driftway.app.query import query
from driftway.app.supervisor import Stack
from driftway.consumers.subscriber import PredictionSubscriber
from driftway.io.broker import free_port
from driftway.logic.features import event_features
from driftway.logic.models import logistic_regression, predict_explained
from driftway.sdk import EventProducer
from driftway.settings import Settings

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"

# One demo seed per phase, so that every phase has its own event ids ("loan-<seed>-<i>").
WARMUP_SEED = 41
THROUGHPUT_SEED = 42  # DemoPlan's default seed: the same data as the bare River baseline
LABELS_SEED = 43
LATENCY_SEED = 44
WARMUP_EVENTS = 200

Events = list[tuple[dict[str, Any], bool]]
console = Console()


def demo_events(n: int, seed: int) -> Events:
    """n demo (raw event, label) pairs, generated up front so generation is never timed."""
    return list(loan_applications(DemoPlan(events=n, change_at=n // 2, seed=seed)))


# --------------------------------------------------------------------------------------------
# 1. bare River


def bench_river(data: Events, explained: bool) -> dict[str, Any]:
    """Featurise, predict and learn on every event, in this process, on one core."""
    model = logistic_regression()
    correct = 0
    t0 = time.perf_counter()
    if explained:  # as the scoring processor serves: transform once, predict, top-3 explanation
        for event, label in data:
            x = event_features(event["data"])
            pred = predict_explained(model, x, top=3).prediction
            correct += pred == label
            model.learn_one(x, label)
    else:
        for event, label in data:
            x = event_features(event["data"])
            proba = model.predict_proba_one(x)
            correct += (proba.get(True, 0.0) > 0.5) == label
            model.learn_one(x, label)
    seconds = time.perf_counter() - t0
    return {"events": len(data), "seconds": seconds, "events_per_s": len(data) / seconds,
            "prequential_accuracy": correct / len(data)}


# --------------------------------------------------------------------------------------------
# helpers on the running stack


def counts(settings: Settings) -> dict[str, int]:
    """Rows stored so far (FINAL, so duplicates count once)."""
    sql = ("SELECT (SELECT count() FROM predictions), (SELECT count() FROM labels), "
           "(SELECT count() FROM training)")
    p, lab, t = query(settings, sql).rows[0]
    return {"predictions": int(p), "labels": int(lab), "training": int(t)}


def stored_times(settings: Settings, seed: int) -> dict[str, float | None]:
    """Unix times of the last prediction made and the last one inserted, for one phase's events."""
    sql = ("SELECT count(), toUnixTimestamp64Micro(max(predicted_at)), "
           "toUnixTimestamp64Milli(max(inserted_at)) FROM predictions "
           f"WHERE startsWith(event_id, 'loan-{seed}-')")
    n, predicted, inserted = query(settings, sql).rows[0]
    return {"stored": int(n),
            "last_predicted_at": int(predicted) / 1e6 if n else None,
            "last_inserted_at": int(inserted) / 1e3 if n else None}


def wait_for(stack: Stack, settings: Settings, done: Any, timeout: float,
             what: str) -> tuple[float, dict[str, int]]:
    """Poll counts() every 0.2 s until done(counts); returns (monotonic time seen, counts).

    The time is taken just before the query that first saw the condition.
    """
    deadline = time.monotonic() + timeout
    while True:
        stack.check()
        t = time.monotonic()
        c = counts(settings)
        if done(c):
            return t, c
        if t > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:.0f}s (stored so far: {c})")
        time.sleep(0.2)


def stack_pids(stack: Stack) -> dict[str, int]:
    """Process ids of the stack's processes and of this one, by name."""
    pids: dict[str, int] = {name: proc.pid for name, proc in stack.children.items()}
    if stack.broker is not None and stack.broker.process is not None:
        pids["kafka broker (java)"] = stack.broker.process.pid
    pids["bench (this process)"] = os.getpid()
    return pids


def cpu_seconds(stack: Stack) -> dict[str, float]:
    """CPU time (user + system, all threads) used so far by each process."""
    out = {}
    for name, pid in stack_pids(stack).items():
        try:
            t = psutil.Process(pid).cpu_times()
            out[name] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out


def cpu_used(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, Any]:
    """CPU seconds each process used between two cpu_seconds() calls, and as cores busy."""
    used = {name: after[name] - before[name] for name in after if name in before}
    return {"wall_seconds": wall, "cpu_seconds": used,
            "cores_busy": {name: v / wall for name, v in used.items()},
            "total_cores_busy": sum(used.values()) / wall}


def warm_up(stack: Stack, settings: Settings, data: Events, timeout: float) -> float:
    """Send a few events and wait until their predictions are stored; returns the seconds.

    Until then the faust workers may still be joining their groups, which belongs to start-up,
    not to throughput.
    """
    t = time.monotonic()
    producer = EventProducer(settings)
    for event, _ in data:
        producer.send_event(event)
    producer.flush()
    wait_for(stack, settings, lambda c: c["predictions"] >= len(data), timeout, "warm-up")
    return time.monotonic() - t


# --------------------------------------------------------------------------------------------
# 2. throughput


def bench_throughput(stack: Stack, settings: Settings, data: Events, seed: int,
                     label_delay: int | None, timeout: float) -> dict[str, Any]:
    """Send every event as fast as the SDK allows; time until ClickHouse holds all predictions.

    With label_delay, each event's label follows label_delay events later (as in the demo), and
    the time until every label is stored and learned from (training rows) is reported too.
    """
    n = len(data)
    base = counts(settings)
    producer = EventProducer(settings)
    pending: deque[tuple[str, bool]] = deque()
    labels = 0
    cpu_before = cpu_seconds(stack)
    first_send_wall = time.time()
    t0 = time.monotonic()
    for event, label in data:
        producer.send_event(event)
        if label_delay is not None:
            pending.append((event["event_id"], label))
            if len(pending) > label_delay:
                event_id, y = pending.popleft()
                producer.send_label({"event_id": event_id, "label": y})
                labels += 1
    while pending:
        event_id, y = pending.popleft()
        producer.send_label({"event_id": event_id, "label": y})
        labels += 1
    producer.flush()
    send_seconds = time.monotonic() - t0

    t_pred, _ = wait_for(stack, settings, lambda c: c["predictions"] - base["predictions"] >= n,
                         timeout, "throughput")
    cpu = cpu_used(cpu_before, cpu_seconds(stack), time.monotonic() - t0)
    result: dict[str, Any] = {
        "events": n, "labels_sent": labels,
        "send_seconds": send_seconds, "send_events_per_s": n / send_seconds,
        "seconds": t_pred - t0, "events_per_s": n / (t_pred - t0),
    }
    if label_delay is not None:
        t_lab, _ = wait_for(stack, settings,
                            lambda c: c["labels"] - base["labels"] >= labels
                            and c["training"] - base["training"] >= labels,
                            timeout, "labels")
        result["seconds_until_labels_learned"] = t_lab - t0
    times = stored_times(settings, seed)
    if times["last_inserted_at"] is not None:
        result["seconds_to_last_insert"] = times["last_inserted_at"] - first_send_wall
        result["events_per_s_by_insert_time"] = n / result["seconds_to_last_insert"]
        result["seconds_to_last_prediction"] = times["last_predicted_at"] - first_send_wall
    result["cpu_until_predictions_stored"] = cpu
    return result


# --------------------------------------------------------------------------------------------
# 3. latency


def quantiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean of values (linear interpolation between closest ranks)."""
    if not values:
        return {}
    s = sorted(values)

    def q(p: float) -> float:
        k = (len(s) - 1) * p
        lo = int(k)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (k - lo)

    return {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": s[-1],
            "mean": sum(s) / len(s)}


def bench_latency(stack: Stack, settings: Settings, data: Events, rate: float,
                  timeout: float) -> dict[str, Any]:
    """Send at `rate` events/s; latency = when a PredictionSubscriber gets it − when it was sent.

    The subscriber starts at the beginning of the predictions topic in a new group, so none of
    this phase's predictions can be missed however long its partition assignment takes; it reads
    the older predictions first, and sending starts only once it has caught up with them.
    """
    prefix = f"loan-{LATENCY_SEED}-"
    # What the earlier phases left on the topic, as records (its watermarks also count the
    # commit markers of the transactions they were written in).
    backlog = int(query(settings, "SELECT count() FROM predictions").rows[0][0])
    sub = PredictionSubscriber(settings, group_id="bench-latency", from_beginning=True,
                               idle_timeout=None)
    received: dict[str, tuple[float, float, float, float]] = {}
    state = {"seen": 0, "duplicates": 0, "error": None}

    def consume() -> None:
        try:
            for p in sub:
                now = time.time()
                state["seen"] += 1
                if p.event_id.startswith(prefix):
                    if p.event_id in received:
                        state["duplicates"] += 1
                    else:
                        received[p.event_id] = (now, p.received_at, p.predicted_at, p.latency_ms)
        except Exception as exc:  # noqa: BLE001 (the main thread reports it)
            state["error"] = exc

    thread = threading.Thread(target=consume, name="bench-subscriber", daemon=True)
    t_sub = time.monotonic()
    thread.start()
    deadline = time.monotonic() + 60
    while state["seen"] < backlog:
        if state["error"] is not None or not thread.is_alive():
            raise RuntimeError(f"the subscriber stopped: {state['error']!r}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the subscriber read {state['seen']} of {backlog} older "
                               "predictions in 60s")
        time.sleep(0.05)
    caught_up = time.monotonic() - t_sub

    # A producer that has sent before: its first send waits for metadata and its idempotent
    # producer id (~0.5 s), which would put the producer's start-up into the p99.
    producer = EventProducer(settings)
    producer.send_event({**data[0][0], "event_id": "latency-warm-up"})
    producer.flush()
    sent: dict[str, float] = {}
    cpu_before = cpu_seconds(stack)
    t0 = time.monotonic()
    for i, (event, _) in enumerate(data):
        ahead = t0 + i / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        sent[event["event_id"]] = time.time()
        producer.send_event(event)
    producer.flush()
    send_seconds = time.monotonic() - t0

    deadline = time.monotonic() + timeout
    while len(received) < len(sent) and time.monotonic() < deadline:
        if state["error"] is not None:
            raise RuntimeError(f"the subscriber failed: {state['error']!r}")
        stack.check()
        time.sleep(0.1)
    drain_seconds = time.monotonic() - t0 - send_seconds
    cpu = cpu_used(cpu_before, cpu_seconds(stack), time.monotonic() - t0)
    sub.idle_timeout = 0  # ends the subscriber's iteration at its next poll; it then closes
    thread.join(10)

    total, to_predicted, to_features, to_prediction, to_subscriber, serving = \
        [], [], [], [], [], []
    for event_id, t_send in sent.items():
        got = received.get(event_id)
        if got is None:
            continue
        t_recv, features_at, predicted_at, latency_ms = got
        total.append((t_recv - t_send) * 1000)
        to_predicted.append((predicted_at - t_send) * 1000)
        to_features.append((features_at - t_send) * 1000)
        to_prediction.append((predicted_at - features_at) * 1000)
        to_subscriber.append((t_recv - predicted_at) * 1000)
        serving.append(latency_ms)
    return {
        "target_rate": rate, "achieved_rate": len(sent) / send_seconds,
        "sent": len(sent), "measured": len(total), "missing": len(sent) - len(total),
        "duplicates": state["duplicates"], "send_seconds": send_seconds,
        "drain_seconds": drain_seconds, "subscriber_catch_up_seconds": caught_up,
        "older_predictions_skipped": backlog,
        "ms": quantiles(total),
        "produce_to_predicted_at_ms": quantiles(to_predicted),
        "breakdown_ms": {
            "send_to_scoring": quantiles(to_features),
            "scoring_to_prediction": quantiles(to_prediction),
            "prediction_to_subscriber": quantiles(to_subscriber),
            "serving_latency_field": quantiles(serving),
        },
        "cpu": cpu,
    }


# --------------------------------------------------------------------------------------------
# 4. memory


def vm_hwm_mib(pid: int) -> float | None:
    """Peak resident set size (VmHWM) of a live process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_memory(stack: Stack) -> dict[str, float | None]:
    """VmHWM of every stack process (and any child of theirs) and of this process."""
    pids = stack_pids(stack)
    for name, pid in list(pids.items()):
        if name == "bench (this process)":
            continue
        try:
            for child in psutil.Process(pid).children(recursive=True):
                pids[f"{name} child {child.pid}"] = child.pid
        except psutil.NoSuchProcess:
            pass
    out: dict[str, float | None] = {name: vm_hwm_mib(pid) for name, pid in pids.items()}
    out["total"] = sum(v for v in out.values() if v is not None)
    return out


# --------------------------------------------------------------------------------------------
# report


def f(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def print_report(r: dict[str, Any]) -> None:
    t = Table("measure", "result", "detail", title="Driftway pipeline benchmark",
              title_justify="left")
    b, bx = r["river"], r["river_explained"]
    t.add_row("bare River: predict_proba_one + learn_one", f"{f(b['events_per_s'])} ev/s",
              f"{b['events']:,} events in {b['seconds']:.2f}s, 1 core, accuracy "
              f"{b['prequential_accuracy']:.3f}")
    t.add_row("bare River: predict_explained(top=3) + learn_one", f"{f(bx['events_per_s'])} ev/s",
              f"as scoring serves; {bx['seconds']:.2f}s")
    for key, name in (("throughput", "end to end, no labels"),
                      ("throughput_labels", "end to end, labels 200 events later")):
        tp = r.get(key)
        if not tp:
            continue
        detail = (f"{tp['events']:,} events: all in ClickHouse after {tp['seconds']:.2f}s "
                  f"(polled); last insert at {f(tp.get('seconds_to_last_insert'), 2)}s "
                  f"= {f(tp.get('events_per_s_by_insert_time'))} ev/s; "
                  f"producing took {tp['send_seconds']:.2f}s ({f(tp['send_events_per_s'])} ev/s)")
        if "seconds_until_labels_learned" in tp:
            detail += (f"; {tp['labels_sent']:,} labels stored and learned from after "
                       f"{tp['seconds_until_labels_learned']:.2f}s")
        t.add_row(f"{name} (raw → prediction → ClickHouse)", f"{f(tp['events_per_s'])} ev/s",
                  detail)
    lat = r.get("latency")
    if lat:
        ms, bd = lat["ms"], lat["breakdown_ms"]
        ok = "" if lat["missing"] == 0 else f" [red]({lat['missing']} MISSING)[/red]"
        t.add_row(f"latency at {f(lat['target_rate'])} ev/s, produce → subscriber",
                  f"p50 {f(ms.get('p50'), 1)} ms\np99 {f(ms.get('p99'), 1)} ms\n"
                  f"max {f(ms.get('max'), 1)} ms",
                  f"{lat['measured']:,} of {lat['sent']:,} events measured{ok}; achieved "
                  f"{f(lat['achieved_rate'])} ev/s; p50/p99 per leg: send→scoring "
                  f"{f(bd['send_to_scoring'].get('p50'), 1)}/"
                  f"{f(bd['send_to_scoring'].get('p99'), 1)}, scoring→prediction "
                  f"{f(bd['scoring_to_prediction'].get('p50'), 1)}/"
                  f"{f(bd['scoring_to_prediction'].get('p99'), 1)}, prediction→subscriber "
                  f"{f(bd['prediction_to_subscriber'].get('p50'), 1)}/"
                  f"{f(bd['prediction_to_subscriber'].get('p99'), 1)} ms")
    tp = r.get("throughput")
    if lat and tp and lat["target_rate"] > 0.9 * tp["events_per_s"]:
        t.add_row("[yellow]note[/yellow]", "[yellow]saturated[/yellow]",
                  f"[yellow]the latency phase's input rate ({f(lat['target_rate'])} ev/s) is at "
                  f"or above the measured throughput ({f(tp['events_per_s'])} ev/s): its "
                  "latencies measure a growing backlog, not steady-state latency; rerun with a "
                  "lower --rate for that[/yellow]")
    if lat:
        pp = lat["produce_to_predicted_at_ms"]
        t.add_row("latency, produce → prediction made (predicted_at)",
                  f"p50 {f(pp.get('p50'), 1)} ms\np99 {f(pp.get('p99'), 1)} ms",
                  "the same events, up to the scoring processor's timestamp: without the "
                  "predictions topic and the subscriber's batching")
    if tp:
        cpu = tp["cpu_until_predictions_stored"]
        t.add_row("cores busy during the no-label throughput run",
                  f"{cpu['total_cores_busy']:.2f} of {r['machine']['cpus']}",
                  "; ".join(f"{name} {v:.2f}" for name, v in cpu["cores_busy"].items()))
    mem = r.get("peak_memory_mib")
    if mem:
        parts = [f"{name} {f(v)}" for name, v in mem.items() if name != "total"]
        t.add_row("peak memory (VmHWM), all processes", f"{f(mem['total'])} MiB",
                  "; ".join(parts) + " MiB")
    console.print(t)
    m = r["machine"]
    console.print(f"stack start {f(r.get('stack_start_seconds'), 1)}s, warm-up "
                  f"{f(r.get('warmup_seconds'), 1)}s, stop {f(r.get('stack_stop_seconds'), 1)}s; "
                  f"whole run {f(r.get('run_seconds'), 0)}s; {m['cpus']} CPUs, load average "
                  f"{m['loadavg_start'][0]:.2f} at start, {f(m.get('loadavg_end', [None])[0], 2)} "
                  "at end")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("river", "confluent-kafka", "faust-streaming", "chdb", "clickhouse-connect"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--events", type=int, default=20_000,
                   help="events in the River baseline and in each throughput run")
    p.add_argument("--rate", type=float, default=1_000, help="input rate of the latency phase")
    p.add_argument("--seconds", type=float, default=20, help="duration of the latency phase")
    p.add_argument("--label-delay", type=int, default=200,
                   help="labels follow their event this many events later (labelled run)")
    p.add_argument("--no-labels-run", action="store_true",
                   help="skip the throughput run with labels")
    p.add_argument("--timeout", type=float, default=180,
                   help="max seconds to wait for a phase to drain")
    p.add_argument("--keep-state", action="store_true",
                   help="keep the stack's temporary state directory (logs, Kafka, ClickHouse)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    args = p.parse_args(argv)
    if args.events < 1 or args.rate <= 0 or args.seconds <= 0:
        p.error("--events, --rate and --seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    record = start_record("pipeline.py")
    latency_events = max(1, round(args.rate * args.seconds))
    r: dict[str, Any] = {
        **record,
        "params": {"events": args.events, "rate": args.rate, "seconds": args.seconds,
                   "latency_events": latency_events, "label_delay": args.label_delay,
                   "warmup_events": WARMUP_EVENTS},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_start": list(os.getloadavg())},
        "versions": versions(),
    }

    console.print(f"generating demo data ({args.events:,} × 2 + {latency_events:,} events)…")
    throughput_data = demo_events(args.events, THROUGHPUT_SEED)
    labels_data = [] if args.no_labels_run else demo_events(args.events, LABELS_SEED)
    latency_data = demo_events(latency_events, LATENCY_SEED)
    warmup_data = demo_events(WARMUP_EVENTS, WARMUP_SEED)

    console.print("1/4 bare River baseline…")
    r["river"] = bench_river(throughput_data, explained=False)
    r["river_explained"] = bench_river(throughput_data, explained=True)
    console.print(f"    {r['river']['events_per_s']:,.0f} ev/s")

    state_dir = Path(tempfile.mkdtemp(prefix="driftway-bench-"))
    broker_port = free_port()
    controller_port = free_port()
    while controller_port == broker_port:
        controller_port = free_port()
    # A dict, not a KafkaSettings: DRIFTWAY_KAFKA__* in the environment (e.g. PARTITIONS)
    # merges with it, as with every other section.
    settings = Settings(state_dir=state_dir, kafka={
        "bootstrap_servers": f"127.0.0.1:{broker_port}", "controller_port": controller_port})
    r["settings"] = {"partitions": settings.kafka.partitions,
                     "batch_size": settings.processing.batch_size,
                     "batch_within": settings.processing.batch_within,
                     "sink_batch_size": settings.sink.batch_size,
                     "sink_flush_seconds": settings.sink.flush_seconds,
                     "broker_heap": settings.kafka.broker_heap}
    stack = Stack(settings)
    failed = True
    # The children inherit our working directory, and faust puts its data directories
    # (<app id>-data) there: run them in the throw-away state directory instead.
    args.out = args.out.resolve()
    cwd = Path.cwd()
    os.chdir(state_dir)
    try:
        console.print(f"starting the stack in {state_dir}…")
        t = time.monotonic()
        stack.start()
        stack.wait_until_serving()
        r["stack_start_seconds"] = time.monotonic() - t

        r["warmup_seconds"] = warm_up(stack, settings, warmup_data, args.timeout)

        console.print(f"2/4 end-to-end throughput, {args.events:,} events…")
        r["throughput"] = bench_throughput(stack, settings, throughput_data, THROUGHPUT_SEED,
                                           None, args.timeout)
        console.print(f"    {r['throughput']['events_per_s']:,.0f} ev/s")
        if labels_data:
            console.print(f"    again with labels ({args.label_delay} events later)…")
            r["throughput_labels"] = bench_throughput(stack, settings, labels_data, LABELS_SEED,
                                                      args.label_delay, args.timeout)
            console.print(f"    {r['throughput_labels']['events_per_s']:,.0f} ev/s")

        console.print(f"3/4 latency at {args.rate:,.0f} ev/s for {args.seconds:g}s…")
        r["latency"] = bench_latency(stack, settings, latency_data, args.rate, args.timeout)
        ms = r["latency"]["ms"]
        console.print(f"    p50 {ms.get('p50', float('nan')):.1f} ms, "
                      f"p99 {ms.get('p99', float('nan')):.1f} ms")

        console.print("4/4 peak memory…")
        stack.check()
        r["peak_memory_mib"] = peak_memory(stack)
        failed = False
    except BaseException as exc:
        r["error"] = f"{type(exc).__name__}: {exc}"
        console.print(f"[red]benchmark failed: {r['error']}[/red]")
        for name in ("scoring", "feedback", "sink"):
            console.print(f"[bold]--- last lines of {name}.log[/bold]\n{stack.tail(name)}")
        if "peak_memory_mib" not in r:
            with contextlib.suppress(OSError, psutil.Error):
                r["peak_memory_mib"] = peak_memory(stack)
        if not isinstance(exc, Exception):
            raise
    finally:
        t = time.monotonic()
        stack.stop()
        r["stack_stop_seconds"] = time.monotonic() - t
        os.chdir(cwd)
        if args.keep_state or failed:
            console.print(f"state kept in {state_dir}")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)

    path = save_record(r, args.out, "pipeline", "machine", started, indent=2)
    if not failed:
        print_report(r)
    console.print(f"results: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
