"""Adaptation: prequential accuracy over concept changes, Driftway's loop against baselines.

    .venv/bin/python bench/adaptation.py [--seeds 3] [--quick] [--jobs N]

On the concept streams of bench/drift_streams.py (SEA and Agrawal with abrupt switches, Hyperplane
with gradual ones; 4 concepts of 25,000 events), with the model that suits each stream
(``bench.drift_streams.MODEL``: logistic regression for SEA and Hyperplane, the Hoeffding tree for
Agrawal), every event is answered before its label is known, and scored against that label:

- ``static``: the model learns from the first 5,000 events, then never again;
- ``driftway``: ``driftway.logic.offline.OfflineLoop``, Driftway's learner and policy in-process
  with
  default settings (a version published every 1,000 labels and served in place of the last;
  concept drift on the champion's errors starts a challenger, the paired test promotes it, a
  worse promoted version is rolled back); each label arrives 50 events after its event;
- ``driftway-no-policy``: the same loop with ``policy.enabled = false``: plain online learning
  with the same label delay and publication, to show what the policy adds;
- ``arf``: River's ``ARFClassifier(seed=seed)``, otherwise its defaults (10 trees, ADWIN per
  tree for warnings and drifts), learning from each label at once (no delay).

Reports, averaged over seeds, the accuracy over the whole stream and over the 5,000 events
after each change point (from the centre of a gradual switch), and what Driftway's policy did:
drift alarms on the champion, challengers, promotions, rollbacks, and how many events after a
change the first alarm and the first promotion came. An action the learner takes at the label
of event i changes what is served from event i + label_delay + 1 on; positions below are those.
Then, per stream and seed, policy on minus policy off (same events): the accuracy after each
change, their mean and overall, with the mean and standard error over seeds, "worse" when the
mean is below zero by more than 2 standard errors, and each seed's first promotion per change.

Plots (matplotlib, ``pip install -e '.[bench]'``) for the first seed: rolling accuracy over
1,000 events of each contender, true change points, Driftway's alarms and promotions:
bench/results/adaptation-<stream>.png and, all streams together, adaptation.png. Writes
bench/results/adaptation-<timestamp>.json. See bench/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, Python puts bench/ first on sys.path: the repository root goes first, so that
# `bench.*` and the project's packages import.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from river import forest

from bench.drift_streams import CONCEPT_STREAMS, Stream, environment, make_stream
from bench.record import save_record, start_record
from driftway.logic.models import make_model
from driftway.logic.offline import OfflineLoop
from driftway.settings import Settings

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CONTENDERS = ("static", "driftway", "driftway-no-policy", "arf")
STATIC_LEARNS = 5_000  # events the static model learns from
AFTER = 5_000  # events after a change whose accuracy is reported
ROLLING = 1_000  # window of the plotted rolling accuracy
BLOCK = 1_000  # the JSON keeps the accuracy of each block of this many events
COLORS = {"static": "tab:gray", "driftway": "tab:blue", "driftway-no-policy": "tab:cyan",
          "arf": "tab:orange"}

console = Console(width=None if sys.stdout.isatty() else 180)


def run_static(stream: Stream) -> np.ndarray:
    assert stream.model is not None
    model, correct = make_model(stream.model), np.zeros(len(stream.events), bool)
    for t, (x, y) in enumerate(stream.events):
        correct[t] = model.predict_one(x) == y
        if t < STATIC_LEARNS:
            model.learn_one(x, y)
    return correct


def run_arf(stream: Stream) -> np.ndarray:
    model, correct = forest.ARFClassifier(seed=stream.seed), np.zeros(len(stream.events), bool)
    for t, (x, y) in enumerate(stream.events):
        correct[t] = model.predict_one(x) == y
        model.learn_one(x, y)
    return correct


def run_driftway(stream: Stream, policy: bool, label_delay: int
                 ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Correctness of what the champion served, and what the learner did, in served positions."""
    assert stream.model is not None
    settings = Settings(signing_key="bench-adaptation-key", processing={"model": stream.model},
                        policy={"enabled": policy})
    loop = OfflineLoop(settings, label_delay=label_delay)
    correct, actions = np.zeros(len(stream.events), bool), []
    for step in loop.run(stream.events):
        correct[step.index] = step.correct
        at = step.index + label_delay + 1  # the first event served after the action
        for d in step.result.drift:
            actions.append({"at": at, "action": "drift", "champion": d.detail.startswith("champ"),
                            "change_point": d.change_point})
        for dep in step.result.deployments:
            if dep.by == "policy":
                action = dep.action
                if action == "unshadow":  # a challenger not better, or dropped on a new drift
                    action = "retire" if dep.reason.startswith("no degradation") else "drop"
                actions.append({"at": at, "action": action, "reason": dep.reason})
    return correct, actions


def run(name: str, seed: int, every: int, contender: str, label_delay: int) -> dict[str, Any]:
    """One contender on one stream: per-event correctness and (Driftway) the policy's actions."""
    started = time.perf_counter()
    stream = make_stream(name, seed, every)
    actions: list[dict[str, Any]] = []
    if contender == "static":
        correct = run_static(stream)
    elif contender == "arf":
        correct = run_arf(stream)
    else:
        correct, actions = run_driftway(stream, contender == "driftway", label_delay)
    return {"stream": name, "seed": seed, "contender": contender, "model": stream.model,
            "detail": stream.detail, "changes": list(stream.changes), "width": stream.width,
            "correct": correct, "actions": actions, "seconds": time.perf_counter() - started}


def first_after(actions: list[dict[str, Any]], kind: str, start: int, end: int) -> int | None:
    """Position of the first action of this kind in [start, end), champion alarms only."""
    return next((a["at"] for a in actions if a["action"] == kind and start <= a["at"] < end
                 and a.get("champion", True)), None)


def summarise_run(r: dict[str, Any]) -> dict[str, Any]:
    correct, changes, width = r["correct"], r["changes"], r["width"]
    n = len(correct)
    out: dict[str, Any] = {
        "stream": r["stream"], "seed": r["seed"], "contender": r["contender"],
        "model": "ARFClassifier" if r["contender"] == "arf" else r["model"],
        "seconds": r["seconds"], "accuracy": float(correct.mean()),
        "after_change": [float(correct[c:c + AFTER].mean()) for c in changes],
        "before_change": [float(correct[max(0, c - AFTER):c].mean()) for c in changes],
        "blocks": [round(float(correct[i:i + BLOCK].mean()), 4) for i in range(0, n, BLOCK)],
    }
    if r["contender"].startswith("driftway"):
        acts = r["actions"]
        ends = [*changes[1:], n]
        count = {k: sum(a["action"] == k for a in acts)
                 for k in ("shadow", "promote", "rollback", "drop", "retire")}
        alarms = [a["at"] for a in acts if a["action"] == "drift" and a["champion"]]
        started = {a["at"] for a in acts if a["action"] == "shadow"}
        count["drift"] = len(alarms)
        # A champion alarm while a challenger is judged or a promotion is on probation.
        count["ignored"] = sum(at not in started for at in alarms) if r["contender"] == \
            "driftway" else 0
        alarm, promote = [], []
        for c, end in zip(changes, ends, strict=True):
            start = c - width // 2
            a, p = first_after(acts, "drift", start, end), first_after(acts, "promote", start, end)
            alarm.append(None if a is None else a - c)
            promote.append(None if p is None else p - c)
        out |= {"actions": acts, "counts": count, "alarm_delay": alarm, "promote_delay": promote}
    return out


def mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


def summarise(runs: list[dict[str, Any]], contenders: list[str]) -> list[dict[str, Any]]:
    """Per stream and contender, means over seeds."""
    rows = []
    for name in CONCEPT_STREAMS:
        for contender in contenders:
            rs = [r for r in runs if r["stream"] == name and r["contender"] == contender]
            if not rs:
                continue
            row: dict[str, Any] = {
                "stream": name, "contender": contender, "model": rs[0]["model"],
                "seeds": len(rs), "accuracy": statistics.fmean(r["accuracy"] for r in rs),
                "accuracy_sd": statistics.stdev([r["accuracy"] for r in rs])
                if len(rs) > 1 else 0.0,
                "after_change": [statistics.fmean(v) for v in zip(*(r["after_change"]
                                                                   for r in rs), strict=True)],
                "before_change": [statistics.fmean(v) for v in zip(*(r["before_change"]
                                                                    for r in rs), strict=True)],
                "seconds": statistics.fmean(r["seconds"] for r in rs),
            }
            if "counts" in rs[0]:
                row["counts"] = {k: statistics.fmean(r["counts"][k] for r in rs)
                                 for k in rs[0]["counts"]}
                for key in ("alarm_delay", "promote_delay"):
                    per_change = list(zip(*(r[key] for r in rs), strict=True))
                    row[key] = [mean(list(v)) for v in per_change]
                    row[key + "_found"] = [sum(d is not None for d in v) for v in per_change]
            rows.append(row)
    return rows


def policy_effect(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per stream, policy on minus policy off, seed by seed (the same events): the accuracy
    after each change, their mean and the whole stream; ``worse`` when the mean difference is
    below zero by more than noise, 2 standard errors of the per-seed differences."""
    rows = []
    for name in CONCEPT_STREAMS:
        on = {r["seed"]: r for r in runs if r["stream"] == name and r["contender"] == "driftway"}
        off = {r["seed"]: r for r in runs
               if r["stream"] == name and r["contender"] == "driftway-no-policy"}
        seeds = sorted(set(on) & set(off))
        if not seeds:
            continue
        row: dict[str, Any] = {"stream": name, "seeds": seeds}
        for key, of in (("after_change", lambda r: r["after_change"]),
                        ("mean_after", lambda r: [statistics.fmean(r["after_change"])]),
                        ("overall", lambda r: [r["accuracy"]])):
            per_seed = [[a - b for a, b in zip(of(on[s]), of(off[s]), strict=True)]
                        for s in seeds]
            row[key] = [difference(list(d)) for d in zip(*per_seed, strict=True)]
        row["worse"] = any(d["worse"] for key in ("after_change", "mean_after", "overall")
                           for d in row[key])
        row["promote_delay"] = [list(d) for d in zip(*(on[s]["promote_delay"] for s in seeds),
                                                     strict=True)]
        rows.append(row)
    return rows


def difference(per_seed: list[float]) -> dict[str, Any]:
    """Mean and standard error of per-seed differences; worse than noise below -2 se."""
    m = statistics.fmean(per_seed)
    se = statistics.stdev(per_seed) / len(per_seed) ** 0.5 if len(per_seed) > 1 else 0.0
    return {"per_seed": per_seed, "mean": m, "se": se, "worse": m + 2 * se < -1e-9}


def f(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def print_report(r: dict[str, Any]) -> None:
    p = r["params"]
    t = Table("stream", "contender", "model", "overall", "after change 1", "after change 2",
              "after change 3", "mean after",
              title=f"Prequential accuracy, mean of {p['seeds']} seeds ({AFTER:,} events after "
                    "each change; Driftway: label delay "
                    f"{p['label_delay']})", title_justify="left")
    for row in r["summary"]:
        after = row["after_change"]
        t.add_row(row["stream"], row["contender"], row["model"],
                  f"{row['accuracy']:.3f} ± {row['accuracy_sd']:.3f}",
                  *(f"{a:.3f}" for a in after), f"{statistics.fmean(after):.3f}")
    console.print(t)
    t = Table("stream", "contender", "champion alarms", "ignored", "challengers", "promotions",
              "rollbacks", "dropped", "first alarm after change", "first promotion after change",
              title="Driftway's policy per stream (mean per seed; delays in served events, "
                    "found/seeds per change)", title_justify="left")
    for row in r["summary"]:
        if "counts" not in row:
            continue
        c = row["counts"]
        t.add_row(row["stream"], row["contender"], f(c["drift"], 1), f(c["ignored"], 1),
                  f(c["shadow"], 1),
                  f(c["promote"], 1), f(c["rollback"], 1), f(c["drop"], 1),
                  "  ".join(f"{f(d)} ({k})" for d, k in zip(row["alarm_delay"],
                                                            row["alarm_delay_found"],
                                                            strict=True)),
                  "  ".join(f"{f(d)} ({k})" for d, k in zip(row["promote_delay"],
                                                            row["promote_delay_found"],
                                                            strict=True)))
    console.print(t)
    t = Table("stream", "on − off after change 1", "after change 2", "after change 3",
              "mean after", "overall", "worse than noise", "first promotion after change, "
              "per seed", title="Policy on minus policy off, per seed (mean ± standard error; "
              "worse: below 0 by more than 2 se)", title_justify="left")
    for row in r["policy_effect"]:
        cells = [*(_difference_cell(d, seeds=False) for d in row["after_change"]),
                 *(_difference_cell(d) for d in row["mean_after"]),
                 *(_difference_cell(d, seeds=False) for d in row["overall"])]
        t.add_row(row["stream"], *cells, "[red]yes[/red]" if row["worse"] else "no",
                  " / ".join(" ".join("—" if d is None else str(d) for d in change)
                             for change in row["promote_delay"]))
    console.print(t)


def _difference_cell(d: dict[str, Any], seeds: bool = True) -> str:
    cell = f"{d['mean']:+.3f} ± {d['se']:.3f}"
    return cell + " (" + " ".join(f"{v:+.3f}" for v in d["per_seed"]) + ")" if seeds else cell


def plot(runs: list[dict[str, Any]], seed: int, out: Path) -> list[Path]:
    """Rolling accuracy of every contender on each stream for one seed; one PNG each and all."""
    try:
        import matplotlib
    except ImportError:
        console.print("[yellow]matplotlib is not installed (pip install -e '.[bench]'): "
                      "no plots[/yellow]")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    streams = [s for s in CONCEPT_STREAMS if any(r["stream"] == s for r in runs)]
    paths = []
    combined, axes = plt.subplots(len(streams), 1, figsize=(13, 3.6 * len(streams)),
                                  squeeze=False)
    for name, ax_all in zip(streams, axes[:, 0], strict=True):
        single, ax = plt.subplots(figsize=(13, 4.2))
        for axis in (ax, ax_all):
            _draw(axis, [r for r in runs if r["stream"] == name and r["seed"] == seed], name)
        single.tight_layout()
        path = out / f"adaptation-{name}.png"
        single.savefig(path, dpi=110)
        plt.close(single)
        paths.append(path)
    combined.tight_layout()
    path = out / "adaptation.png"
    combined.savefig(path, dpi=110)
    plt.close(combined)
    return [*paths, path]


def _draw(ax: Any, runs: list[dict[str, Any]], name: str) -> None:
    first = runs[0]
    drawn = ("static", "arf", "driftway-no-policy", "driftway")  # Driftway's on top
    for r in sorted(runs, key=lambda r: drawn.index(r["contender"])):
        rolling = np.convolve(r["correct"], np.ones(ROLLING) / ROLLING, mode="valid")
        x = np.arange(ROLLING - 1, ROLLING - 1 + len(rolling))
        ax.plot(x, rolling, color=COLORS[r["contender"]], lw=1.1 if r["contender"] != "driftway"
                else 1.6, label=f"{r['contender']} ({r['correct'].mean():.3f})")
    for k, c in enumerate(first["changes"]):
        if first["width"]:
            ax.axvspan(c - first["width"] / 2, c + first["width"] / 2, color="k", alpha=0.06,
                       label="gradual switch" if k == 0 else None)
        ax.axvline(c, color="k", ls="--", lw=1, label="true change" if k == 0 else None)
    driftway = next((r for r in runs if r["contender"] == "driftway"), None)
    if driftway is not None:
        marks = {"drift": ("v", "tab:red", "Driftway: drift alarm (champion)", 1.01),
                 "promote": ("^", "tab:green", "Driftway: promotion", 0.985),
                 "rollback": ("x", "tab:purple", "Driftway: rollback", 0.985),
                 "drop": ("x", "tab:gray", "Driftway: challenger dropped", 0.985)}
        for kind, (marker, color, label, y) in marks.items():
            at = [a["at"] for a in driftway["actions"]
                  if a["action"] == kind and a.get("champion", True)]
            if at:
                ax.scatter(at, [y] * len(at), marker=marker, color=color, s=46, zorder=5,
                           label=label, clip_on=False)
            if kind == "promote":
                for a in at:
                    ax.axvline(a, color=color, lw=0.8, alpha=0.6)
    ax.set_ylim(0.4, 1.03)
    ax.set_xlim(0, len(first["correct"]))
    ax.set_title(f"{name}: {first['detail']}; model {first['model']}; seed {first['seed']}",
                 fontsize=10, loc="left")
    ax.set_xlabel("event")
    ax.set_ylabel(f"accuracy, rolling {ROLLING:,}")
    ax.legend(fontsize=7.5, loc="lower left", ncol=3)
    ax.grid(alpha=0.25)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seeds", type=int, default=3, help="seeds (streams) per stream type")
    p.add_argument("--every", type=int, default=25_000, help="events per concept (4 concepts)")
    p.add_argument("--label-delay", type=int, default=50, help="Driftway's label delay, events")
    p.add_argument("--streams", nargs="+", choices=CONCEPT_STREAMS, default=list(CONCEPT_STREAMS))
    p.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    p.add_argument("--quick", action="store_true",
                   help="1 seed, 10,000 events per concept: a check that it runs (about 2 min)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where JSON and PNGs go")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.every = 1, 10_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    record = start_record("adaptation.py")
    r: dict[str, Any] = {
        **record,
        "params": {"seeds": args.seeds, "every": args.every, "label_delay": args.label_delay,
                   "streams": args.streams, "contenders": args.contenders, "jobs": args.jobs,
                   "static_learns": STATIC_LEARNS, "after": AFTER, "rolling": ROLLING,
                   "block": BLOCK},
        "environment": environment(),
    }
    cost = {"arf": 0, "driftway": 1, "driftway-no-policy": 2, "static": 3}  # slowest first
    jobs = sorted(((name, seed, c) for name in args.streams for seed in range(args.seeds)
                   for c in args.contenders), key=lambda j: (cost[j[2]], j[0] != "agrawal"))
    runs = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool, Progress(console=console) as bar:
        task = bar.add_task(f"{len(jobs)} runs", total=len(jobs))
        futures = [pool.submit(run, name, seed, args.every, c, args.label_delay)
                   for name, seed, c in jobs]
        for future in as_completed(futures):
            runs.append(future.result())
            bar.advance(task)
    runs.sort(key=lambda x: (CONCEPT_STREAMS.index(x["stream"]), x["seed"],
                             CONTENDERS.index(x["contender"])))
    per_run = [summarise_run(x) for x in runs]
    r["summary"] = summarise(per_run, args.contenders)
    r["policy_effect"] = policy_effect(per_run)
    r["runs"] = per_run
    args.out.mkdir(parents=True, exist_ok=True)
    r["plots"] = [str(p) for p in plot(runs, seed=0, out=args.out)]
    path = save_record(r, args.out, "adaptation", "environment", started, indent=1)
    print_report(r)
    for p in r["plots"]:
        console.print(f"plot: {p}")
    console.print(f"{r['run_seconds']:.0f} s on {args.jobs} processes; results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
