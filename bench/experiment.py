"""Experiment replay speed: `driftway experiment`'s per-candidate run against a bare River loop.

    .venv/bin/python bench/experiment.py [--events 20000] [--models logistic_regression ...]
                                         [--repeats 3]

On the same synthetic examples (River's SEA stream, each label 50 s after its event), times a
bare ``predict_proba_one`` + ``learn_one`` loop and ``driftway.logic.experiment.run_candidate``
— what the command runs in each of its processes: the merged serve/label order, the replay with
predictions collected into numpy, the metrics — alternately, `--repeats` times each, and prints
the ratio of their best speeds (replay / bare; the target is >= 0.8).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from river import datasets  # noqa: E402

from driftway.logic.experiment import History, run_candidate  # noqa: E402
from driftway.logic.models import make_model  # noqa: E402


def bare(spec: str, xs: list[dict[str, float]], ys: list[bool]) -> float:
    """Seconds for the bare River prequential loop."""
    model = make_model(spec)
    start = time.perf_counter()
    for x, y in zip(xs, ys, strict=True):
        model.predict_proba_one(x)
        model.learn_one(x, y)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--models", nargs="+", default=["logistic_regression", "hoeffding_tree"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = list(datasets.synth.SEA(seed=1).take(args.events))
    xs, ys = [x for x, _ in data], [bool(y) for _, y in data]
    history = History(xs, ys, [None] * len(xs), [(float(i), float(i + 50)) for i in range(len(xs))])
    for spec in args.models:
        ours, theirs = [], []
        for _ in range(args.repeats):
            theirs.append(bare(spec, xs, ys))
            start = time.perf_counter()
            outcome = run_candidate(spec, history)
            ours.append(time.perf_counter() - start)
        n = args.events
        print(f"{spec}: {n} events, bare {n / min(theirs):,.0f}/s, "
              f"run_candidate {n / min(ours):,.0f}/s, ratio {min(theirs) / min(ours):.2f}, "
              f"accuracy {outcome.metrics['accuracy']:.3f}, "
              f"log loss {outcome.metrics['log_loss']:.3f}")


if __name__ == "__main__":
    main()
