"""Driftway fidelity benchmark: the accuracy the pipeline serves against the same model learning
in process with the same label delay.

    .venv/bin/python bench/fidelity.py [--streams demo phishing bananas shuttle] [--policy-off]

For each stream, on a fresh local stack warmed up with demo events whose labels the model cannot
learn: the events at `--rate`, each label `--label-delay` events after its event; the served
accuracy is the stored predictions against those labels. The
reference, in this process: the learner's fresh model (``make_model`` with the learner's caps)
and the pipeline's features (``featurize`` with a per-entity state), and for event i: predict,
then learn the label of event i − D. Accuracy is given for the first 2,000 events after the
concept change and the rest (a bundled real data set has no known change: from its start).

Prints one table and writes bench/results/fidelity-<timestamp>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from feedback_loop import bench_settings, running_stack, send_paced, stack_settings
from pipeline import RESULTS_DIR, Events, demo_events, f, quantiles, versions
from record import save_record, start_record
from rich.console import Console
from rich.table import Table
from river import datasets

from driftway.app.demo import DemoPlan, event_ts, loan_applications
from driftway.app.explain import explain_event, table_records
from driftway.app.query import query
from driftway.app.supervisor import Stack
from driftway.logic.models import coerce_label, make_model
from driftway.logic.offline import learning_in_process, raw_stream
from driftway.logic.replay import rebuild
from driftway.schemas.events import LabelValue, label_text
from driftway.sdk import EventProducer
from driftway.settings import Settings

DEMO_SEED = 70
WARM_UP_SEED = 79
#: The warm-up's label where the model cannot learn it (a binary classifier): the whole loop
#: runs — join, training topic, learner, live updates — and the model stays as it was.
WARM_UP_LABEL = "warm-up, not a class"
AFTER = 2_000  # the "first events after the change" window

console = Console()


# --------------------------------------------------------------------------------------------
# streams: (events, index of the concept change)


def river_events(name: str, dataset: Any, limit: int | None) -> Events:
    """A bundled River data set as raw events: numbers as they are, the label as a boolean
    (binary data sets), event ids `<name>-<i>`, one millisecond apart, entities drawn from
    2,000 as the demo draws its applicants."""
    rng = random.Random(0)
    out: Events = []
    for i, (x, y) in enumerate(dataset):
        if limit is not None and i >= limit:
            break
        out.append(({"event_id": f"{name}-{i:08d}", "entity_id": f"{name}-{rng.randrange(2_000)}",
                     "ts": int(event_ts(i).timestamp() * 1000),
                     "data": {k: float(v) for k, v in x.items()}}, bool(y)))
    return out


STREAMS: dict[str, Callable[[int], tuple[Events, int, str]]] = {
    # (events, change at, what it is)
    "demo": lambda n: (demo_events(n, DEMO_SEED), n // 2,
                       "the demo's loan applications (Agrawal 7 → 6 at the middle)"),
    "phishing": lambda n: (river_events("phishing", datasets.Phishing(), n), 0,
                           "river.datasets.Phishing (1,250 web pages, 9 features)"),
    "bananas": lambda n: (river_events("bananas", datasets.Bananas(), n), 0,
                          "river.datasets.Bananas (5,300 points, 2 features, not linear)"),
    "shuttle": lambda n: (river_events("shuttle", datasets.Shuttle(), n), 0,
                          "river.datasets.Shuttle (49,097 NASA shuttle records, 7 % class 1)"),
}


# --------------------------------------------------------------------------------------------
# the reference: the same model learning in this process


def learnable_label(template: Any, label: LabelValue) -> bool:
    """Whether the model learns from `label` (the learner refuses the others as dead letters)."""
    try:
        coerce_label(template, label)
    except ValueError:
        return False
    return True


def in_process(events: Events, settings: Settings, label_delay: int,
               warm_up: list[tuple[int, bytes | None]]
               ) -> tuple[list[LabelValue | None], list[dict[str, float]]]:
    """Each event's prediction (and features) by the learner's fresh model that first learns
    the stack's warm-up examples (training-topic records, as the learner did), then, after
    predicting event i, the label of event i − label_delay (driftway.logic.offline)."""
    p = settings.processing
    model = make_model(p.model, max_categories=p.max_categories, max_features=p.max_features)
    rebuild(model, warm_up, p.model_name, make_model(p.model), 0,
            len(warm_up) and warm_up[-1][0] + 1)
    stream = list(raw_stream(events))
    predictions = list(learning_in_process(stream, settings, label_delay, model))
    return predictions, [x for x, _ in stream]


# --------------------------------------------------------------------------------------------
# what was served


def prefix_of(events: Events) -> str:
    """What every event id of a stream starts with (`loan-70-`, `phishing-`)."""
    return events[0][0]["event_id"].rsplit("-", 1)[0] + "-"


def stored(settings: Settings, prefix: str) -> tuple[int, int]:
    """This stream's (predictions, training examples) in ClickHouse."""
    p, t = query(settings, f"SELECT (SELECT uniqExact(event_id) FROM predictions WHERE "
                           f"startsWith(event_id, '{prefix}')), (SELECT uniqExact(event_id) "
                           f"FROM training WHERE startsWith(event_id, '{prefix}'))").rows[0]
    return int(p), int(t)


def serve(stack: Stack, events: Events, rate: float, label_delay: int,
          timeout: float) -> dict[str, Any]:
    """Send the stream at `rate`, each label label_delay events later; wait until every
    prediction and every example is stored."""
    settings = stack.settings
    producer = EventProducer(settings)
    sent = send_paced(producer, events, rate, label_delay, len(events), lambda _k: False)
    prefix, labels = prefix_of(events), len(sent["label_sent"])
    deadline = time.monotonic() + timeout
    while True:
        stack.check()
        n_pred, n_train = stored(settings, prefix)
        if n_pred >= len(events) and n_train >= labels:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout:.0f}s: {n_pred} of {len(events)} predictions, "
                               f"{n_train} of {labels} examples stored")
        time.sleep(0.3)
    return {"send_seconds": sent["seconds"], "achieved_rate": sent["achieved_rate"],
            "labels_sent": labels, "drained_seconds": time.monotonic() - deadline + timeout}


def served_rows(settings: Settings, prefix: str) -> dict[int, dict[str, Any]]:
    """By event index: the first stored prediction of each event and the state that made it."""
    rows = query(settings, f"""
        SELECT event_id, argMin(prediction, predicted_at), argMin(state_version, predicted_at),
               argMin(trained_through, predicted_at), argMin(features, predicted_at), count()
        FROM predictions WHERE startsWith(event_id, '{prefix}') GROUP BY event_id""").rows
    return {int(event_id.rsplit("-", 1)[1]): {
        "prediction": prediction, "state_version": state, "trained_through": int(through),
        "features": {str(k): float(v) for k, v in features.items()}, "rows": int(n)}
        for event_id, prediction, state, through, features, n in rows}


def learned_offsets(settings: Settings, prefix: str) -> list[int]:
    """Training offsets of this stream's examples, in order."""
    return [int(o) for (o,) in query(settings, f"SELECT _offset FROM training WHERE "
                                               f"startsWith(event_id, '{prefix}') "
                                               "ORDER BY _offset").rows]


def lineage_roots(settings: Settings) -> dict[str, tuple[str, str]]:
    """Each version's root (its oldest ancestor) and the root's reason: version zero
    ("initial: …") or a challenger of the policy ("challenger: …")."""
    rows = query(settings, "SELECT version, any(parent), any(reason) FROM model_versions "
                           "GROUP BY version").rows
    parent = {v: p for v, p, _ in rows}
    reason = {v: r for v, _, r in rows}
    roots: dict[str, tuple[str, str]] = {}
    for version in parent:
        v, seen = version, set()
        while parent.get(v) and v not in seen:
            seen.add(v)
            v = parent[v]
        roots[version] = (v, reason.get(v, ""))
    return roots


def policy_actions(settings: Settings) -> list[dict[str, Any]]:
    """The deployments the learner's policy made: shadow, promote, rollback, unshadow."""
    rows = query(settings, "SELECT toString(ts), action, substring(version, 1, 12), reason "
                           "FROM deployments WHERE by = 'policy' ORDER BY ts, _offset").rows
    return [{"ts": ts, "action": a, "version": v, "reason": r} for ts, a, v, r in rows]


def explain_sample(settings: Settings, prefix: str, n_events: int, k: int) -> dict[str, Any]:
    """`driftway explain` on k predictions spread over the stream: how many are reproduced
    exactly from their state (version + training records), and the verdicts of the others."""
    picks = sorted({round(i * (n_events - 1) / max(1, k - 1)) for i in range(k)}) if k else []
    verdicts: Counter[str] = Counter()
    matched = 0
    for i in picks:
        report = explain_event(settings, f"{prefix}{i:08d}", settings.processing.model_name)
        matched += report.matches
        if not report.matches:
            verdicts[report.verdict] += 1
    return {"checked": len(picks), "matched": matched, "other_verdicts": dict(verdicts)}


# --------------------------------------------------------------------------------------------
# comparison


def accuracy(correct: list[bool]) -> float | None:
    """The share of True (None for no values)."""
    return sum(correct) / len(correct) if correct else None


def windows(n: int, change_at: int) -> list[tuple[str, int, int]]:
    """(name, start, end) of the accuracy windows."""
    first = ("first 2,000 after the change" if change_at else "first 2,000")
    out = [("before the change", 0, change_at)] if change_at else []
    out += [(first, change_at, min(n, change_at + AFTER)),
            ("the rest", min(n, change_at + AFTER), n), ("all", 0, n)]
    return [w for w in out if w[2] > w[1]]


def compare(events: Events, change_at: int, reference: list[LabelValue | None],
            served: dict[int, dict[str, Any]], roots: dict[str, tuple[str, str]],
            template: Any) -> dict[str, Any]:
    """Accuracy of both per window, their agreement, and what the policy's states served."""
    truth = [label_text(coerce_label(template, y)) for _e, y in events]
    ref = [label_text(p) for p in reference]
    got = [served[i]["prediction"] if i in served else None for i in range(len(events))]
    out: list[dict[str, Any]] = []
    for name, a, b in windows(len(events), change_at):
        idx = [i for i in range(a, b) if got[i] is not None]
        r_acc = accuracy([ref[i] == truth[i] for i in idx])
        s_acc = accuracy([got[i] == truth[i] for i in idx])
        out.append({"window": name, "start": a, "end": b, "events": len(idx),
                    "in_process": r_acc, "served": s_acc,
                    "difference_points": None if r_acc is None or s_acc is None
                    else (s_acc - r_acc) * 100,
                    "agreement": accuracy([got[i] == ref[i] for i in idx])})
    by_challenger = [i for i, row in served.items()
                     if roots.get(row["state_version"], ("", ""))[1].startswith("challenger")]
    return {"windows": out, "missing_predictions": sum(g is None for g in got),
            "served_by_challenger_lineage": {
                "events": len(by_challenger),
                "first_event": min(by_challenger) if by_challenger else None,
                "served_accuracy": accuracy([got[i] == truth[i] for i in by_challenger]),
                "in_process_accuracy": accuracy([ref[i] == truth[i] for i in by_challenger])}}


def effective_delay(served: dict[int, dict[str, Any]], offsets: list[int],
                    label_delay: int) -> dict[str, Any]:
    """Labels not yet learned when each event was served (the reference: exactly D): event i
    minus this stream's examples below the state's trained_through."""
    delays = {i: i - bisect_left(offsets, row["trained_through"])
              for i, row in served.items() if i >= label_delay}
    buckets: dict[int, list[int]] = {}
    for i, d in delays.items():
        buckets.setdefault(i // 1000, []).append(d - label_delay)
    return {"events": quantiles([float(d) for d in delays.values()]),
            "beyond_label_delay": quantiles([float(d - label_delay) for d in delays.values()]),
            "beyond_label_delay_per_1000_events": [
                {"from": b * 1000, "p50": quantiles([float(d) for d in ds])["p50"],
                 "max": max(ds)} for b, ds in sorted(buckets.items())]}


# --------------------------------------------------------------------------------------------


def run_stream(name: str, args: argparse.Namespace, sections: dict[str, Any]) -> dict[str, Any]:
    events, change_at, what = STREAMS[name](args.events if name == "demo" else args.max_events)
    out: dict[str, Any] = {"stream": name, "what": what, "events": len(events),
                           "change_at": change_at}
    settings = bench_settings(**sections)
    learns_warm_up = learnable_label(make_model(settings.processing.model), WARM_UP_LABEL)
    warm = [({**e, "entity_id": f"warm-up-{e['entity_id']}"}, y if learns_warm_up
             else WARM_UP_LABEL) for e, y in
            loan_applications(DemoPlan(events=args.warm_up, change_at=args.warm_up,
                                       seed=WARM_UP_SEED))]
    prefix = prefix_of(events)
    console.print(f"{name}: {len(events):,} events at {args.rate:,.0f}/s on a fresh stack, "
                  f"after {len(warm):,} labelled warm-up events…")
    t = time.monotonic()
    with running_stack(settings, args.keep_state) as stack:
        out["stack_start_seconds"] = time.monotonic() - t
        out["settings"] = stack_settings(stack)
        s = stack.settings
        if warm:
            out["warm_up"] = serve(stack, warm, args.rate, args.label_delay, args.timeout)
            out["warm_up"]["labels"] = "the demo's" if learns_warm_up else repr(WARM_UP_LABEL)
            warm_records = table_records(s, s.processing.model_name, 0,
                                         learned_offsets(s, prefix_of(warm))[-1] + 1)
        else:
            warm_records = []
        out["serve"] = serve(stack, events, args.rate, args.label_delay, args.timeout)
        served = served_rows(s, prefix)
        offsets = learned_offsets(s, prefix)
        out["policy_actions"] = policy_actions(s)
        out["versions_published"] = int(query(s, "SELECT uniqExact(version) FROM "
                                                 "model_versions").rows[0][0])
        out["explained"] = explain_sample(s, prefix, len(events), args.explain_sample)
        roots = lineage_roots(s)
    t = time.monotonic()
    reference, features = in_process(events, settings, args.label_delay, warm_records)
    out["reference_seconds"] = time.monotonic() - t
    out["comparison"] = compare(events, change_at, reference, served, roots,
                                make_model(settings.processing.model))
    out["features_differ"] = sum(row["features"] != features[i] for i, row in served.items())
    out["duplicated_predictions"] = sum(row["rows"] > 1 for row in served.values())
    out["effective_delay"] = effective_delay(served, offsets, args.label_delay)
    return out


def print_report(r: dict[str, Any]) -> None:
    p = r["params"]
    t = Table("stream", "events", "in process", "served", "served − in process\n(points)",
              "agreement",
              title=f"Fidelity: {p['model']} at {f(p['rate'])} events/s, labels "
                    f"{p['label_delay']} events later, a version every {p['publish_every']:,} "
                    f"examples, policy {'off' if p['policy_off'] else 'on (defaults)'}",
              title_justify="left")
    done = [s for s in r["streams"] if "error" not in s]
    for s in done:
        for w in s["comparison"]["windows"]:
            diff = w["difference_points"]
            colour = "" if diff is None or abs(diff) <= 3 else "[red]"
            t.add_row(f"{s['stream']}: {w['window']}", f"{w['events']:,}",
                      f(w["in_process"], 3), f(w["served"], 3),
                      f"{colour}{f(diff, 2)}", f(w["agreement"], 3))
    console.print(t)
    for s in r["streams"]:
        if "error" in s:
            console.print(f"  {s['stream']}: [red]failed: {s['error'].splitlines()[0]}[/red]")
            continue
        d, c = s["effective_delay"]["beyond_label_delay"], s["comparison"]
        ch = c["served_by_challenger_lineage"]
        acts = Counter(a["action"] for a in s["policy_actions"])
        console.print(
            f"  {s['stream']}: served states were {f(d.get('p50'))} (p50) / {f(d.get('p99'))} "
            f"(p99) / {f(d.get('max'))} (max) labels behind the reference; "
            f"{s['features_differ']} feature vectors differ, "
            f"{c['missing_predictions']} predictions missing; policy: "
            f"{', '.join(f'{n} {a}' for a, n in acts.items()) or 'no action'}"
            + (f", {ch['events']:,} events served by a challenger's lineage (served "
               f"{f(ch['served_accuracy'], 3)}, in process {f(ch['in_process_accuracy'], 3)})"
               if ch["events"] else "")
            + f"; explain: {s['explained']['matched']} of {s['explained']['checked']} exact")
    m = r["machine"]
    console.print(f"whole run {f(r.get('run_seconds'), 0)}s; {m['cpus']} CPUs, load average "
                  f"{m['loadavg_start'][0]:.2f} at start, "
                  f"{f(m.get('loadavg_end', [None])[0], 2)} at end")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--streams", nargs="+", default=list(STREAMS), choices=list(STREAMS))
    p.add_argument("--events", type=int, default=20_000, help="events of the demo stream")
    p.add_argument("--max-events", type=int, default=None,
                   help="at most this many events of each real data set (default: all)")
    p.add_argument("--rate", type=float, default=1_000, help="input rate, events/s")
    p.add_argument("--warm-up", type=int, default=3_000,
                   help="labelled demo events (entities of their own) sent before each stream, "
                        "with a label the model cannot learn if there is one (else the "
                        "reference learns their examples first, as the learner did)")
    p.add_argument("--label-delay", type=int, default=200,
                   help="each label follows its event this many events later")
    p.add_argument("--model", default=None,
                   help="processing.model; unset: the settings' (logistic_regression)")
    p.add_argument("--publish-every", type=int, default=None,
                   help="processing.publish_every; unset: the settings' (1,000)")
    p.add_argument("--policy-off", action="store_true",
                   help="policy.enabled false: no challengers, promotions or rollbacks")
    p.add_argument("--explain-sample", type=int, default=20,
                   help="predictions per stream recomputed with `driftway explain`")
    p.add_argument("--timeout", type=float, default=180,
                   help="max seconds to wait for a stream's records after sending")
    p.add_argument("--keep-state", action="store_true",
                   help="keep each stack's temporary state directory")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    args = p.parse_args(argv)
    if args.events <= args.label_delay or args.rate <= 0:
        p.error("--events must exceed --label-delay, --rate must be positive")
    if 0 < args.warm_up <= args.label_delay:
        p.error("--warm-up must be 0 or exceed --label-delay (its labels must be learned)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    sections: dict[str, Any] = {}
    processing = {k: v for k, v in (("model", args.model),
                                    ("publish_every", args.publish_every)) if v}
    if processing:
        sections["processing"] = processing
    if args.policy_off:
        sections["policy"] = {"enabled": False}
    r: dict[str, Any] = {
        **start_record("fidelity.py"),
        "params": {"streams": args.streams, "events": args.events, "warm_up": args.warm_up,
                   "max_events": args.max_events, "rate": args.rate,
                   "label_delay": args.label_delay, "policy_off": args.policy_off,
                   "model": Settings(**sections).processing.model,
                   "publish_every": Settings(**sections).processing.publish_every},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_start": list(os.getloadavg())},
        "versions": versions(), "streams": [],
    }
    args.out = args.out.resolve()
    for name in args.streams:  # a stream that fails is reported; the others still run
        try:
            r["streams"].append(run_stream(name, args, sections))
        except Exception as exc:
            r["streams"].append({"stream": name, "error": f"{type(exc).__name__}: {exc}"})
            console.print(f"[red]{name} failed: {r['streams'][-1]['error']}[/red]")
            continue
        w = r["streams"][-1]["comparison"]["windows"][-1]
        console.print(f"    all: in process {f(w['in_process'], 3)}, served {f(w['served'], 3)}")
    path = save_record(r, args.out, "fidelity", "machine", started, indent=2)
    print_report(r)
    console.print(f"results: {path}")
    return 1 if any("error" in s for s in r["streams"]) else 0


if __name__ == "__main__":
    sys.exit(main())
