"""Streams with known change points, shared by bench/drift.py and bench/adaptation.py.

Every stream is four concepts of ``every`` events (25,000 by default, so 100,000 events), and a
stream is a pure function of its name, seed and length: both benchmarks, and every detector or
model within one, see exactly the same events.

- ``sea``: River's SEA with 10 % label noise, variants 0 → 1 → 2 → 3 (the threshold on
  x0 + x1 goes 8 → 9 → 7 → 9.5), switched abruptly. Each concept is its own SEA generator,
  concatenated, so the change points are exact.
- ``agrawal``: River's Agrawal, classification functions 0 → 2 → 5 → 8, switched abruptly.
- ``hyperplane``: River's Hyperplane (10 features, 5 % noise), a new random hyperplane (another
  generator seed) per concept, switched gradually: around each change point ``c`` an event
  comes from the new concept with probability 1 / (1 + exp(-4 (t - c) / width)), River's
  ConceptDriftStream sigmoid; ``c`` is the centre, where half the events are new. River's own
  ``mag_change`` drift is continuous (the hyperplane turns a little at every event), so it has
  no change point a detector could be scored against; a gradual switch has one, and a width.
- ``variance_shift``: the same, with the sd of one feature multiplied by 2, then 1.5, then
  1.25; ``category_shift``: 10 such features and a one-hot ``city`` of 4 categories whose
  shares go 0.4/0.3/0.2/0.1 → 0.3/0.3/0.2/0.2 → 0.3/0.25/0.25/0.2 → uniform. Data drift only.
- ``mean_shift``: 20 independent standard Gaussian features and no labels; at each change point
  one feature (a different one each time, chosen by the seed) shifts its mean by 1.0, then 0.5,
  then 0.25 standard deviations, and stays there. Data drift only.

With ``stationary=True`` the same generator makes the same number of events without any
change (the first concept throughout): the false-alarm baseline.

>>> s = make_stream("sea", seed=0, every=1_000)
>>> len(s.events), s.changes, s.width, s.model
(4000, (1000, 2000, 3000), 0, 'logistic_regression')
>>> s.events[:1] == make_stream("sea", seed=0, every=1_000).events[:1]
True
>>> make_stream("mean_shift", seed=0, every=1_000, stationary=True).changes
()
"""

from __future__ import annotations

import itertools
import math
import os
import platform
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

import numpy as np
from river.datasets import synth

CONCEPTS = 4
EVERY = 25_000  # events per concept
WIDTH = 5_000  # width of a gradual switch (River's ConceptDriftStream ``width``)
SEA_VARIANTS = (0, 1, 2, 3)
AGRAWAL_FUNCTIONS = (0, 2, 5, 8)
SHIFTS = (1.0, 0.5, 0.25)  # mean shifts of the mean_shift stream, in standard deviations
GAUSSIAN_FEATURES = 20

# The model that suits each concept stream, used by every detector and every contender. SEA's
# and Hyperplane's concepts are linear: Driftway's default StandardScaler | LogisticRegression
# fits them. Agrawal's functions 0, 2 and 5 are age bands and salary ranges, which a linear
# model cannot represent (it stays near 60 % accuracy there), so Agrawal gets the Hoeffding tree.
MODEL = {"sea": "logistic_regression", "agrawal": "hoeffding_tree",
         "hyperplane": "logistic_regression"}
CONCEPT_STREAMS = tuple(MODEL)
DATA_STREAMS = ("mean_shift", "variance_shift", "category_shift")
STREAMS = (*CONCEPT_STREAMS, *DATA_STREAMS)
SD_RATIOS = (2.0, 1.5, 1.25)  # sd changes of the variance_shift stream
CATEGORY_SHARES = ((0.4, 0.3, 0.2, 0.1), (0.3, 0.3, 0.2, 0.2), (0.3, 0.25, 0.25, 0.2),
                   (0.25, 0.25, 0.25, 0.25))  # the category_shift stream's mixes, per concept

Event = tuple[dict, bool | None]


@dataclass(frozen=True)
class Stream:
    """Events (features, label or None) and where the truth changes.

    ``changes`` are 0-based event indices: the first event of each new concept (abrupt), or the
    centre of the switch (gradual, ``width`` > 0).
    """

    name: str
    kind: Literal["concept", "data"]
    seed: int
    events: list[Event]
    changes: tuple[int, ...]
    width: int
    model: str | None  # the model that suits it; None for data-drift streams
    detail: str


def make_stream(name: str, seed: int, every: int = EVERY, stationary: bool = False,
                width: int = WIDTH) -> Stream:
    """One of STREAMS, ``CONCEPTS`` × ``every`` events long, as a list (it is read many times)."""
    if name not in STREAMS:
        raise ValueError(f"unknown stream {name!r}; choose one of {', '.join(STREAMS)}")
    n = CONCEPTS * every
    changes = () if stationary else tuple(every * k for k in range(1, CONCEPTS))
    if name in DATA_STREAMS:
        return _data_stream(name, seed, n, changes)
    base = 1000 * seed  # each concept's generator gets its own seed: base + concept
    if name == "sea":
        concepts = [iter(synth.SEA(variant=v, noise=0.1, seed=base + k))
                    for k, v in enumerate(SEA_VARIANTS)]
        detail = "SEA variants " + " → ".join(map(str, SEA_VARIANTS)) + ", 10 % noise, abrupt"
    elif name == "agrawal":
        concepts = [iter(synth.Agrawal(classification_function=f, seed=base + k))
                    for k, f in enumerate(AGRAWAL_FUNCTIONS)]
        detail = "Agrawal functions " + " → ".join(map(str, AGRAWAL_FUNCTIONS)) + ", abrupt"
    else:
        concepts = [iter(synth.Hyperplane(seed=base + k, n_features=10, noise_percentage=0.05))
                    for k in range(CONCEPTS)]
        detail = f"Hyperplane, a new hyperplane per concept, gradual (width {width:,})"
    gradual = width if name == "hyperplane" else 0
    if stationary:
        events = list(itertools.islice(concepts[0], n))
        detail = detail.split(",")[0] + f", first concept only ({n:,} events)"
    else:
        events = list(_switch(concepts, changes, gradual, n, random.Random(base + 99)))
    # Feature names are strings in Driftway's schemas; SEA and Hyperplane number theirs.
    events = [({k if isinstance(k, str) else f"x{k}": v for k, v in x.items()}, bool(y))
              for x, y in events]
    return Stream(name, "concept", seed, events, changes, gradual, MODEL[name], detail)


def _switch(concepts: list[Iterator], changes: tuple[int, ...], width: int, n: int,
            rng: random.Random) -> Iterator:
    """``n`` events from ``concepts[k]`` between changes k-1 and k; sigmoid mixing if width."""
    for t in range(n):
        k = sum(t >= c for c in changes)  # the concept after the last change passed
        if width and changes:
            near = min(range(len(changes)), key=lambda j: abs(t - changes[j]))
            z = 4.0 * (t - changes[near]) / width
            new = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
            k = near + 1 if rng.random() < new else near
        yield next(concepts[k])


def _data_stream(name: str, seed: int, n: int, changes: tuple[int, ...]) -> Stream:
    """20 N(0, 1) features; one (per change, chosen by the seed) shifts its mean by SHIFTS or its
    sd by SD_RATIOS; or 10 of them and a city whose mix goes through CATEGORY_SHARES."""
    rng = np.random.default_rng(seed)
    width = GAUSSIAN_FEATURES // 2 if name == "category_shift" else GAUSSIAN_FEATURES
    values = rng.standard_normal((n, width))
    names = [f"x{j:02d}" for j in range(width)]
    chosen = rng.choice(width, size=len(SHIFTS), replace=False)
    bounds = (0, *changes, n)
    if name == "mean_shift":
        for c, feature, shift in zip(changes, chosen, SHIFTS, strict=False):
            values[c:, feature] += shift
        what = ", ".join(f"mean +{s} sd in {names[f]}" for f, s in zip(chosen, SHIFTS, strict=True))
    elif name == "variance_shift":
        for c, feature, ratio in zip(changes, chosen, SD_RATIOS, strict=False):
            values[c:, feature] *= ratio
        what = ", ".join(f"sd x{r} in {names[f]}" for f, r in zip(chosen, SD_RATIOS, strict=True))
    else:
        what = "city shares " + " → ".join("/".join(f"{p:g}" for p in shares)
                                          for shares in CATEGORY_SHARES)
    events: list[Event] = [(dict(zip(names, row, strict=True)), None) for row in values.tolist()]
    if name == "category_shift":
        for k in range(len(bounds) - 1):
            cities = rng.choice(4, size=bounds[k + 1] - bounds[k], p=CATEGORY_SHARES[k])
            for t, c in zip(range(bounds[k], bounds[k + 1]), cities.tolist(), strict=True):
                events[t][0][f"city={'abcd'[c]}"] = 1.0
    detail = (f"{width} N(0, 1) features" + (" and a 4-way city" if name == "category_shift"
                                              else "")
              + (f"; {what}" if changes else f", no change ({n:,} events)"))
    return Stream(name, "data", seed, events, changes, 0, None, detail)


def environment() -> dict[str, object]:
    """Versions, the commit and the machine, for the JSON of a benchmark run."""
    root = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(root)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip() or None
    dirty = subprocess.run([*git, "diff", "--quiet", "HEAD"], check=False).returncode != 0
    out: dict[str, object] = {"commit": commit, "uncommitted_changes": dirty,
                              "python": platform.python_version(),
                              "platform": platform.platform(), "cpus": os.cpu_count(),
                              "loadavg_start": list(os.getloadavg())}
    for dist in ("river", "numpy", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out
