"""Drift detection quality: Driftway's detectors against River's defaults, on known changes.

    .venv/bin/python bench/drift.py [--seeds 10] [--quick] [--jobs N]

Streams (bench/drift_streams.py): SEA and Agrawal with abrupt concept switches, Hyperplane with
gradual switches, and an abrupt mean shift in one of 20 Gaussian features; each also once
without any change (``stationary``), for the false-alarm rate. Every detector sees the same
streams, seed by seed.

Concept streams: the model that suits the stream (``bench.drift_streams.MODEL``) learns online,
prequentially (predict, then learn, no label delay, never reset), and every detector watches
its 0/1 error stream, the same for all:

- ``driftway``: Driftway's ``ConceptDriftDetector`` with ``DriftSettings()`` defaults (ADWIN
  with River's default delta, warm-up 200, cooldown 1,000, rises only: a detection where the
  errors fell restarts ADWIN without an alarm), built as ``Learner._detector`` builds it: its
  alarms are the learner's concept drift events;
- ``river_adwin`` and ``river_ddm``: River's ``ADWIN()`` and ``DDM()``, defaults, every
  ``drift_detected`` an alarm.

Data streams (``mean_shift``, ``variance_shift``, ``category_shift``): ``driftway`` is the drift
processor's ``SequentialDriftMonitor`` (built by ``driftway.streams.drift.ModelMonitors`` from
``DriftSettings()``: CUSUMs per numeric feature and a window-limited GLR per category mix,
against a 1,000-event reference that grows, run every 16 events, 1 false alarm per 100,000
events budgeted over all features), fed the features directly (the processor's 1,000-event
warm-up and its ignore list do not matter here); ``window_ks`` is the former monitor,
``DataDriftMonitor()`` (KS / chi-square on 1,000-event windows every 250 events);
``river_adwin`` is one River ``ADWIN()`` per feature on the raw values (per category of a
one-hot group, on its 0/1 indicator), any of them alarming counts (alarms of several features at
the same event count once); ``river_adwin_0.001`` the same with ``delta=0.001``, which keeps
ADWIN within the false-alarm budget (see ``ADWIN_DELTAS``). ``theory`` is the delay
ln(n_features * 1e5 / budget) / information per event: d^2 / 2 nats for a mean shift of d sd,
(r^2 - 1 - ln r^2) / 2 for an sd ratio r, sum q ln(q / p) for a category mix p -> q.

Scoring, per change point ``c`` (the centre of a gradual switch of width ``w``): its window is
[c - w, c + w/2 + tolerance) (at c - w, 1.8 % of the events are of the new concept; at
c + w/2, 88 %), cut at the next window and at the end of the stream. The first alarm in the
window detects the change, with delay = alarm - c (negative when a gradual switch is caught
before its centre); no alarm in it is a miss; later alarms in it are repeats. Alarms outside
every window are false alarms, per 100,000 events outside the windows. Per change point, the
mean delay comes with its standard error over the seeds: a small shift's delay varies a lot
(at 0.25 sd, about 150 events from stream to stream), so a few seeds cannot rank two
detectors that are within some tens of events of each other; a last table pairs them,
Driftway's delay minus per-feature ADWIN's on the same stream and change.

Cost: CPU time per update, amortised over a stationary stream, of the drift processor's
``SequentialDriftMonitor.update`` and of the former ``DataDriftMonitor.update`` (20 Gaussian
features, built as above) and of the learner's
``ConceptDriftDetector.update`` (a 10 % error stream), measured in this process after the streams.

Prints tables and writes bench/results/drift-<timestamp>.json. See bench/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, Python puts bench/ first on sys.path: the repository root goes first, so that
# `bench.*` and the project's packages import.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import itertools
import math
import os
import random
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from river import drift as river_drift

from bench.drift_streams import (
    CATEGORY_SHARES,
    CONCEPT_STREAMS,
    DATA_STREAMS,
    SD_RATIOS,
    SHIFTS,
    STREAMS,
    Stream,
    environment,
    make_stream,
)
from bench.record import save_record, start_record
from bench.window_monitor import DataDriftMonitor
from driftway.logic.drift import ConceptDriftDetector
from driftway.logic.models import make_model
from driftway.settings import DriftSettings
from driftway.streams.drift import ModelMonitors

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CONCEPT_DETECTORS = ("driftway", "river_adwin", "river_ddm")
# Per-feature ADWIN at River's default delta, and at a smaller one: on 20 stationary Gaussian
# features (1,000 streams of 100,000 events per feature) 0.002 gave 1.14 false alarms per
# 100,000 events over the 20, above the budget of 1; 0.001 gave 0.46, like Driftway.
ADWIN_DELTAS = {"river_adwin": 0.002, "river_adwin_0.001": 0.001}
DATA_DETECTORS = ("driftway", "window_ks", *ADWIN_DELTAS)
STARTUP = 5_000  # false alarms in the first events are counted apart too: the model is learning

console = Console(width=None if sys.stdout.isatty() else 180)


def concept_detector(settings: DriftSettings) -> ConceptDriftDetector:
    """The detector the learner puts on each version's errors (``Learner._detector``)."""
    return ConceptDriftDetector(settings.concept_detector, dict(settings.concept_params),
                                cooldown=settings.concept_cooldown,
                                warmup=settings.concept_warmup)


def watch_errors(errors: list[float]) -> dict[str, list[int]]:
    """Alarm positions (0-based event indices) of each concept detector on one error stream."""
    driftway = concept_detector(DriftSettings())
    adwin, ddm = river_drift.ADWIN(), river_drift.binary.DDM()
    alarms: dict[str, list[int]] = {name: [] for name in CONCEPT_DETECTORS}
    for t, e in enumerate(errors):
        if driftway.update(e) is not None:
            alarms["driftway"].append(t)
        adwin.update(e)
        if adwin.drift_detected:
            alarms["river_adwin"].append(t)
        ddm.update(e)
        if ddm.drift_detected:
            alarms["river_ddm"].append(t)
    return alarms


def watch_features(stream: Stream) -> tuple[dict[str, list[int]], dict[str, list[list[str]]]]:
    """Alarm positions of each data detector, and which features alarmed at each."""
    monitors = {"driftway": ModelMonitors(DriftSettings()).data, "window_ks": DataDriftMonitor()}
    adwins: dict[str, Any] = {}
    categories: dict[str, float] = {}  # one-hot names seen: ADWIN gets their 0s too
    alarms: dict[str, list[int]] = {name: [] for name in DATA_DETECTORS}
    features: dict[str, list[list[str]]] = {name: [] for name in DATA_DETECTORS}
    for t, (x, _y) in enumerate(stream.events):
        for det, monitor in monitors.items():
            found = monitor.update(x)
            if found:
                alarms[det].append(t)
                features[det].append(sorted(str(a.feature) for a in found))
        categories.update((k, 0.0) for k in x if "=" in k)
        for det, delta in ADWIN_DELTAS.items():
            alarmed = []
            for name, value in {**categories, **x}.items():
                detector = adwins.get((det, name))
                if detector is None:
                    detector = adwins[det, name] = river_drift.ADWIN(delta=delta)
                detector.update(value)
                if detector.drift_detected:
                    alarmed.append(name)
            if alarmed:
                alarms[det].append(t)
                features[det].append(alarmed)
    return alarms, features


def per_update_cost(data_events: int = 20_000, concept_events: int = 100_000,
                    seed: int = 7) -> dict[str, Any]:
    """CPU microseconds per update of the data monitor and of the concept detector."""
    rng = random.Random(seed)
    names = [f"f{j}" for j in range(20)]
    rows = [{name: rng.gauss(0, 1) for name in names} for _ in range(data_events)]
    errors = [float(rng.random() < 0.1) for _ in range(concept_events)]
    settings = DriftSettings()
    monitor = ModelMonitors(settings).data
    started = time.process_time()
    for row in rows:
        monitor.update(row)
    data_us = (time.process_time() - started) / data_events * 1e6
    window = DataDriftMonitor()
    started = time.process_time()
    for row in rows:
        window.update(row)
    window_us = (time.process_time() - started) / data_events * 1e6
    detector = concept_detector(settings)
    started = time.process_time()
    for e in errors:
        detector.update(e)
    concept_us = (time.process_time() - started) / concept_events * 1e6
    return {"data_monitor_update_us": data_us, "window_monitor_update_us": window_us,
            "data_features": len(names),
            "data_events": data_events, "concept_detector_update_us": concept_us,
            "concept_detector": settings.concept_detector, "concept_events": concept_events}


def run(name: str, seed: int, every: int, stationary: bool, width: int) -> dict[str, Any]:
    """One stream, one seed: every detector's alarms (and the watched model's errors)."""
    started = time.perf_counter()
    stream = make_stream(name, seed, every, stationary=stationary, width=width)
    out: dict[str, Any] = {"stream": name, "seed": seed, "stationary": stationary,
                           "features": sorted(stream.events[0][0]),
                           "n": len(stream.events), "changes": list(stream.changes),
                           "width": stream.width, "model": stream.model, "detail": stream.detail}
    if stream.kind == "data":
        out["alarms"], out["alarmed_features"] = watch_features(stream)
    else:
        assert stream.model is not None
        model, errors = make_model(stream.model), []
        for x, y in stream.events:
            errors.append(float(model.predict_one(x) != y))
            model.learn_one(x, y)
        out["alarms"] = watch_errors(errors)
        out["error_rates"] = error_rates(errors, stream.changes, every)
    out["seconds"] = time.perf_counter() - started
    return out


def error_rates(errors: list[float], changes: tuple[int, ...], every: int
                ) -> dict[str, list[float]]:
    """The watched model's error at the end of each concept and just after each change."""
    ends = [*changes, len(errors)]
    last = min(5_000, every)
    first = min(2_000, every)
    return {
        f"last_{last}_of_concept": [statistics.fmean(errors[e - last:e]) for e in ends],
        f"first_{first}_after_change": [statistics.fmean(errors[c:c + first]) for c in changes],
    }


def score(alarms: list[int], changes: list[int], width: int, n: int, tolerance: int
          ) -> dict[str, Any]:
    """Detections, delays, repeats and false alarms of one detector on one stream."""
    windows = []
    for k, c in enumerate(changes):
        start = max(0, c - width)
        end = c + width // 2 + tolerance
        if k + 1 < len(changes):
            end = min(end, changes[k + 1] - width)
        windows.append((start, min(end, n)))
    delays: list[int | None] = []
    repeats = 0
    attributed = set()
    for (start, end), c in zip(windows, changes, strict=True):
        inside = [t for t in alarms if start <= t < end]
        attributed.update(inside)
        delays.append(inside[0] - c if inside else None)
        repeats += max(0, len(inside) - 1)
    false = [t for t in alarms if t not in attributed]
    return {"delays": delays, "repeats": repeats, "false_alarms": len(false),
            "false_at_startup": sum(t < STARTUP for t in false),
            "quiet_events": n - sum(end - start for start, end in windows)}


def summarise(runs: list[dict[str, Any]], tolerance: int) -> list[dict[str, Any]]:
    """Per stream and detector, over all seeds: the figures of the tables."""
    rows = []
    for name in STREAMS:
        detectors = DATA_DETECTORS if name in DATA_STREAMS else CONCEPT_DETECTORS
        changing = [r for r in runs if r["stream"] == name and not r["stationary"]]
        still = [r for r in runs if r["stream"] == name and r["stationary"]]
        if not changing and not still:
            continue
        for det in detectors:
            scored = [score(r["alarms"][det], r["changes"], r["width"], r["n"], tolerance)
                      for r in changing]
            per_change = list(zip(*(s["delays"] for s in scored), strict=True))
            delays = [d for s in scored for d in s["delays"] if d is not None]
            changes = sum(len(s["delays"]) for s in scored)
            quiet = sum(s["quiet_events"] for s in scored)
            false = sum(s["false_alarms"] for s in scored)
            still_events = sum(r["n"] for r in still)
            still_alarms = sum(len(r["alarms"][det]) for r in still)
            still_startup = sum(sum(t < STARTUP for t in r["alarms"][det]) for r in still)
            rows.append({
                "stream": name, "detector": det, "seeds": len(changing),
                "changes": changes, "detected": len(delays), "missed": changes - len(delays),
                "delay_mean": statistics.fmean(delays) if delays else None,
                "delay_median": statistics.median(delays) if delays else None,
                "repeats_per_change": sum(s["repeats"] for s in scored) / changes
                if changes else None,
                "false_alarms": false,
                "false_at_startup": sum(s["false_at_startup"] for s in scored),
                "false_per_100k": false / quiet * 1e5 if quiet else None,
                "stationary_alarms": still_alarms,
                "stationary_at_startup": still_startup,
                "stationary_per_100k": still_alarms / still_events * 1e5 if still else None,
                "per_change": [per_change_row(ds) for ds in per_change],
            })
        if name in DATA_STREAMS and changing:
            rows.append(theory_row(name, changing[0]))
    return rows


def paired(runs: list[dict[str, Any]], tolerance: int, other: str = "river_adwin"
           ) -> list[dict[str, Any]]:
    """Per data stream and change point, Driftway's delay minus ``other``'s on the same
    streams (where both detected it): mean and standard error. Pairing removes most of the
    streams' own spread, so it ranks the two where the per-detector means cannot."""
    rows = []
    for name in DATA_STREAMS:
        changing = [x for x in runs if x["stream"] == name and not x["stationary"]]
        if not changing:
            continue
        per_change: list[list[int]] = [[] for _ in changing[0]["changes"]]
        for x in changing:
            ours, theirs = (score(x["alarms"][d], x["changes"], x["width"], x["n"],
                                  tolerance)["delays"] for d in ("driftway", other))
            for k, (a, b) in enumerate(zip(ours, theirs, strict=True)):
                if a is not None and b is not None:
                    per_change[k].append(a - b)
        rows.append({"stream": name, "against": other, "per_change": [
            {"pairs": len(d), "mean": statistics.fmean(d) if d else None,
             "se": statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else None}
            for d in per_change]})
    return rows


def per_change_row(delays: tuple[int | None, ...]) -> dict[str, Any]:
    """Detections of one change point over the seeds, their mean delay and its standard error
    (the spread of a small shift's delay is large: at 0.25 sd, about 150 events per seed)."""
    found = [d for d in delays if d is not None]
    return {"detected": len(found), "of": len(delays),
            "delay_mean": statistics.fmean(found) if found else None,
            "delay_se": statistics.stdev(found) / math.sqrt(len(found))
            if len(found) > 1 else None}


def information(name: str) -> list[float]:
    """Kullback-Leibler information per event (nats) of each change of a data stream: a mean
    shift of d sd, d^2 / 2; an sd ratio r, (r^2 - 1 - ln r^2) / 2; a category mix p -> q,
    sum q ln(q / p)."""
    if name == "mean_shift":
        return [d * d / 2 for d in SHIFTS]
    if name == "variance_shift":
        return [(r * r - 1 - math.log(r * r)) / 2 for r in SD_RATIOS]
    return [sum(b * math.log(b / a) for a, b in zip(p, q, strict=True))
            for p, q in itertools.pairwise(CATEGORY_SHARES)]


def theory_row(name: str, run: dict[str, Any]) -> dict[str, Any]:
    """The theoretical delay of each change: ln(in-control run length) / information, with one
    false alarm per 100,000 / budget events over all features (run length n_features * 1e5 /
    budget per feature)."""
    n_features = len({k.partition("=")[0] for k in run["features"]})
    log_arl = math.log(n_features * 1e5 / DriftSettings().false_alarms_per_100k)
    delays = [log_arl / i for i in information(name)]
    return {"stream": name, "detector": "theory", "seeds": 0, "changes": len(delays),
            "detected": len(delays), "missed": 0, "delay_mean": statistics.fmean(delays),
            "delay_median": statistics.median(delays), "repeats_per_change": None,
            "false_alarms": 0, "false_at_startup": 0, "false_per_100k": None,
            "stationary_alarms": 0, "stationary_at_startup": 0, "stationary_per_100k": None,
            "per_change": [{"detected": 1, "of": 1, "delay_mean": d} for d in delays]}


def f(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def print_report(r: dict[str, Any]) -> None:
    p = r["params"]
    t = Table("stream", "detector", "detected", "delay mean", "delay median", "repeats/change",
              "false alarms", "FA/100k", "FA/100k stationary",
              title=f"Drift detection over {p['seeds']} seeds (tolerance {p['tolerance']:,} "
                    f"events after a change; FA in parentheses: in the first {STARTUP:,} events)",
              title_justify="left")
    for row in r["summary"]:
        t.add_row(row["stream"], row["detector"], f"{row['detected']}/{row['changes']}",
                  f(row["delay_mean"]), f(row["delay_median"]), f(row["repeats_per_change"], 2),
                  f"{row['false_alarms']} ({row['false_at_startup']})",
                  f(row["false_per_100k"], 1),
                  f"{f(row['stationary_per_100k'], 1)} ({row['stationary_at_startup']})")
    console.print(t)
    t = Table("stream", "detector", *(f"change {k}" for k in (1, 2, 3)),
              title="Per change point: detected / changes, mean delay ± its standard error",
              title_justify="left")
    for row in r["summary"]:
        t.add_row(row["stream"], row["detector"],
                  *(f"{c['detected']}/{c['of']}, {f(c['delay_mean'])}"
                    + (f" ± {f(c['delay_se'])}" if c.get("delay_se") is not None else "")
                    for c in row["per_change"]))
    console.print(t)
    t = Table("stream", "model", "error at the end of each concept", "error just after each change",
              title="The watched model's prequential error (mean over seeds)",
              title_justify="left")
    for name in CONCEPT_STREAMS:
        runs = [x for x in r["runs"] if x["stream"] == name and not x["stationary"]]
        if not runs:
            continue
        cols = []
        for key in runs[0]["error_rates"]:
            means = [statistics.fmean(v) for v in zip(*(x["error_rates"][key] for x in runs),
                                                      strict=True)]
            cols.append(" → ".join(f"{m:.3f}" for m in means) + f"  ({key.replace('_', ' ')})")
        t.add_row(name, runs[0]["model"], *cols)
    console.print(t)
    if r.get("paired"):
        t = Table("stream", "against", *(f"change {k}" for k in (1, 2, 3)),
                  title="Paired: Driftway's delay minus the other's on the same streams, mean ± "
                        "standard error (negative: Driftway sooner)", title_justify="left")
        for row in r["paired"]:
            t.add_row(row["stream"], row["against"], *(
                f"{f(c['mean'])}" + (f" ± {f(c['se'])}" if c["se"] is not None else "")
                for c in row["per_change"]))
        console.print(t)
    c = r["per_update_us"]
    t = Table("update", "CPU time per update", title="Per-update cost (amortised, this process)",
              title_justify="left")
    t.add_row(f"SequentialDriftMonitor.update (driftway), {c['data_features']} features "
              f"({c['data_events']:,} updates)", f"{c['data_monitor_update_us']:.1f} µs")
    t.add_row(f"DataDriftMonitor.update (window_ks), {c['data_features']} features "
              f"({c['data_events']:,} updates)", f"{c['window_monitor_update_us']:.1f} µs")
    t.add_row(f"ConceptDriftDetector.update, {c['concept_detector']} "
              f"({c['concept_events']:,} updates)", f"{c['concept_detector_update_us']:.2f} µs")
    console.print(t)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seeds", type=int, default=10, help="seeds (streams) per stream type")
    p.add_argument("--every", type=int, default=25_000, help="events per concept (4 concepts)")
    p.add_argument("--tolerance", type=int, default=5_000,
                   help="events after a change (after a gradual switch) an alarm may come")
    p.add_argument("--width", type=int, default=5_000, help="width of Hyperplane's switches")
    p.add_argument("--streams", nargs="+", choices=STREAMS, default=list(STREAMS))
    p.add_argument("--no-stationary", action="store_true",
                   help="skip the streams without change (the false-alarm baseline)")
    p.add_argument("--quick", action="store_true",
                   help="3 seeds, 10,000 events per concept: a check that it runs (about 30 s)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.every = 3, 10_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    record = start_record("drift.py")
    r: dict[str, Any] = {
        **record,
        "params": {"seeds": args.seeds, "every": args.every, "tolerance": args.tolerance,
                   "width": args.width, "streams": args.streams, "jobs": args.jobs,
                   "stationary": not args.no_stationary, "startup": STARTUP},
        "drift_settings": DriftSettings().model_dump(),
        "environment": environment(),
    }
    # The slowest streams (Agrawal's generator, the Hoeffding tree) first: better packing.
    order = {"agrawal": 0, "mean_shift": 1, "variance_shift": 1, "category_shift": 1,
             "hyperplane": 2, "sea": 3}
    jobs = sorted(((name, seed, stationary) for name in args.streams
                   for seed in range(args.seeds)
                   for stationary in ((False,) if args.no_stationary else (False, True))),
                  key=lambda j: order[j[0]])
    runs = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool, Progress(console=console) as bar:
        task = bar.add_task(f"{len(jobs)} streams", total=len(jobs))
        futures = [pool.submit(run, name, seed, args.every, stationary, args.width)
                   for name, seed, stationary in jobs]
        for future in as_completed(futures):
            runs.append(future.result())
            bar.advance(task)
    runs.sort(key=lambda x: (STREAMS.index(x["stream"]), x["stationary"], x["seed"]))
    r["summary"] = summarise(runs, args.tolerance)
    r["paired"] = [row for other in ADWIN_DELTAS for row in paired(runs, args.tolerance, other)]
    r["per_update_us"] = per_update_cost()
    r["runs"] = runs
    path = save_record(r, args.out, "drift", "environment", started, indent=1)
    print_report(r)
    console.print(f"{r['run_seconds']:.0f} s on {args.jobs} processes; results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
