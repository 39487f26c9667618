"""Experiment replay speed: driftway.logic.experiment.replay against a bare River loop.

    .venv/bin/python bench/experiment.py [--events 20000] [--model logistic_regression]

On the same synthetic examples (River's SEA stream), times a bare ``predict_proba_one`` +
``learn_one`` loop and the experiment's replay (merged serve/label order with a label delay
of 50 examples, predictions collected into numpy, metrics at the end), and prints the ratio
of their speeds (replay / bare; the target is >= 0.8).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from river import datasets

from driftway.logic.experiment import classification_metrics, replay, replay_order
from driftway.logic.models import make_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--model", default="logistic_regression")
    args = parser.parse_args()
    data = list(datasets.synth.SEA(seed=1).take(args.events))
    xs, ys = [x for x, _ in data], [bool(y) for _, y in data]

    model = make_model(args.model)
    start = time.perf_counter()
    for x, y in zip(xs, ys, strict=True):
        model.predict_proba_one(x)
        model.learn_one(x, y)
    bare = time.perf_counter() - start

    start = time.perf_counter()
    times = [(float(i), float(i + 50)) for i in range(len(xs))]
    proba = replay(make_model(args.model), xs, ys, replay_order(times))
    figures = classification_metrics(proba, np.array(ys))
    ours = time.perf_counter() - start
    print(f"{args.model}: {args.events} events, bare {args.events / bare:,.0f}/s, "
          f"replay {args.events / ours:,.0f}/s, ratio {bare / ours:.2f}, "
          f"accuracy {figures['accuracy']:.3f}, log loss {figures['log_loss']:.3f}")


if __name__ == "__main__":
    main()
