from __future__ import annotations

import pickle
import random
import subprocess
import sys

import pytest
from pydantic import ValidationError

from driftway.logic.features import event_features
from driftway.logic.learning import Learner, StepResult
from driftway.logic.models import make_model, predict_explained
from driftway.logic.vocabulary import FeatureCap, first_step
from driftway.schemas.events import TrainingExample
from driftway.settings import ProcessingSettings, Settings

DEFAULTS = ProcessingSettings()
CAPS = {"max_categories": DEFAULTS.max_categories, "max_features": DEFAULTS.max_features}


def events(n: int, ids: int = 0, seed: int = 0):
    """(features, label): a learnable amount, a small category, and an id sent as data (unique,
    or one of `ids`)."""
    rng = random.Random(seed)
    for i in range(n):
        amount = rng.gauss(0, 1)
        x = event_features({"amount": amount, "country": rng.choice("ABC"),
                            "request_id": f"req-{i % ids if ids else i:06d}"})
        yield x, amount > 0


def test_defaults_cap_100_values_per_field_and_1000_features() -> None:
    assert CAPS == {"max_categories": 100, "max_features": 1000}
    assert ProcessingSettings(max_categories=0, max_features=0).max_categories == 0
    with pytest.raises(ValidationError):
        ProcessingSettings(max_categories=-1)


def test_the_first_n_values_of_each_field_are_admitted_and_later_ones_are_other() -> None:
    cap = FeatureCap(max_categories=3, max_features=0)
    for i in range(10):
        cap.learn_one({"amount": float(i), f"zip=z{i}": 1.0, f"city=c{i % 2}": 1.0})
    assert [cap.transform_one({f"zip=z{i}": 1.0}) for i in (0, 2, 3, 9, 42)] == [
        {"zip=z0": 1.0}, {"zip=z2": 1.0}, {"zip=<other>": 1.0}, {"zip=<other>": 1.0},
        {"zip=<other>": 1.0}]
    # Another field has a cap of its own; numbers are not categories.
    assert cap.transform_one({"city=c1": 1.0, "amount": 5.0}) == {"city=c1": 1.0, "amount": 5.0}
    assert cap.transform_one({"city=c7": 1.0}) == {"city=c7": 1.0}  # room left: as it is
    assert (cap.admitted, cap.overflowed, cap.dropped) == (1 + 3 + 1 + 2, 7, 0)


def test_values_come_apart_at_the_first_equals_sign() -> None:
    cap = FeatureCap(max_categories=1, max_features=0)
    cap.learn_one({"url=a=b": 1.0})
    assert cap.transform_one({"url=a=c": 1.0}) == {"url=<other>": 1.0}


def test_the_total_is_capped_and_what_is_past_it_dropped() -> None:
    cap = FeatureCap(max_categories=0, max_features=4)
    for i in range(20):
        cap.learn_one({f"n{i}": 1.0, f"id=v{i}": 1.0})
    assert cap.admitted == 4 and cap.dropped == 36 and cap.overflowed == 0
    assert cap.transform_one({"n0": 2.0, "id=v1": 1.0, "n7": 3.0, "id=v9": 1.0}) == {
        "n0": 2.0, "id=v1": 1.0}


def test_an_other_bucket_counts_towards_the_total() -> None:
    cap = FeatureCap(max_categories=1, max_features=3)
    for i in range(5):
        cap.learn_one({"a=x" if i == 0 else f"a=y{i}": 1.0, f"b=z{i}": 1.0})
    # a=x, b=z0, then a=<other> fills the total: b's bucket never gets in.
    assert cap.transform_one({"a=q": 1.0, "b=q": 1.0}) == {"a=<other>": 1.0}
    assert cap.admitted == 3 and cap.dropped == 4


def test_transform_learns_nothing_and_passes_a_known_input_itself() -> None:
    cap = FeatureCap(max_categories=1, max_features=10)
    x = {"a=1": 1.0, "n": 2.0}
    cap.learn_one(x)
    before = pickle.dumps(cap)
    assert cap.transform_one(x) is x
    cap.transform_one({"a=2": 1.0, "m": 1.0, "b=1": 1.0})
    assert pickle.dumps(cap) == before


def test_a_pickled_cap_behaves_as_the_original_and_a_clone_starts_clean() -> None:
    cap = FeatureCap(max_categories=5, max_features=50)
    stream = [x for x, _ in events(300)]
    for x in stream[:200]:
        cap.learn_one(x)
    copy = pickle.loads(pickle.dumps(cap))
    for x in stream[200:]:
        assert copy.transform_one(x) == cap.transform_one(x)
        cap.learn_one(x)
        copy.learn_one(x)
    assert pickle.dumps(copy) == pickle.dumps(cap)
    fresh = cap.clone()
    assert (fresh.max_categories, fresh.max_features, fresh.admitted) == (5, 50, 0)


def test_the_same_stream_gives_the_same_bytes_under_any_hash_seed() -> None:
    script = (
        "import hashlib, pickle; from driftway.logic.vocabulary import FeatureCap\n"
        "cap = FeatureCap(max_categories=20, max_features=100)\n"
        "for i in range(500): cap.learn_one({f'f{i % 7}=v{i}': 1.0, f'n{i % 150}': 1.0})\n"
        "print(hashlib.sha256(pickle.dumps(cap)).hexdigest())\n")
    digests = {
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")}
    assert len(digests) == 1


def test_the_default_model_stays_bounded_under_an_id_sent_as_data() -> None:
    capped = make_model("logistic_regression", **CAPS)
    sizes = {}
    for i, (x, y) in enumerate(events(50_000), start=1):
        capped.learn_one(x, y)
        if i in (10_000, 50_000):
            sizes[i] = len(pickle.dumps(capped))
    # (Counters take more bytes as they grow: a few, not ~60 a value.)
    assert sizes[50_000] - sizes[10_000] < 100 and sizes[50_000] < 20_000, sizes
    cap = first_step(capped)
    assert cap.admitted == 1 + 3 + 101 and cap.overflowed == 50_000 - 100

    # Without the cap the same stream grows the model by some 60 bytes a value (this is what
    # the cap is for, and shows the bound above can fail).
    uncapped = make_model("logistic_regression")
    for x, y in events(20_000):
        uncapped.learn_one(x, y)
    assert len(pickle.dumps(uncapped)) > 1_000_000


def test_below_the_cap_predictions_and_explanations_are_those_of_an_uncapped_model() -> None:
    for spec in ("logistic_regression", "hoeffding_tree"):
        capped, uncapped = make_model(spec, **CAPS), make_model(spec)
        stream = list(events(620, ids=90))
        for x, y in stream[:600]:
            capped.learn_one(x, y)
            uncapped.learn_one(x, y)
        unmet = event_features({"amount": 0.3, "country": "B", "request_id": "req-new"})
        for x, _ in [*stream[600:], (unmet, True)]:
            assert predict_explained(capped, x, top=3) == predict_explained(uncapped, x, top=3)


def test_explanations_name_the_features_the_model_sees_past_the_cap() -> None:
    for spec in ("logistic_regression", "hoeffding_tree"):  # linear parts, and occlusion
        model = make_model(spec, max_categories=2, max_features=0)
        rng = random.Random(1)
        for i in range(600):
            zipcode = f"z{i % 2}" if i < 100 else f"z{i}"  # then always past the cap
            late = zipcode not in ("z0", "z1")
            model.learn_one({"zipcode=" + zipcode: 1.0, "noise": rng.random()}, late)
        out = predict_explained(model, {"zipcode=z9999": 1.0, "noise": 0.5}, top=2)
        assert out.prediction is True
        features = {c.feature: c.value for c in out.explanation}
        assert features["zipcode=<other>"] == 1.0 and "zipcode=z9999" not in features


def test_the_learner_bounds_every_fresh_model_by_the_settings(tmp_path) -> None:
    settings = Settings(state_dir=tmp_path, signing_key="a-long-enough-test-key",
                        processing=ProcessingSettings(max_categories=7, max_features=70))
    learner = Learner(settings)
    meta, _artifact, _deployment = learner.bootstrap()
    for offset, (x, y) in enumerate(events(20)):
        learner.step(offset, TrainingExample(event_id=f"e{offset}", model="default",
                                             version=meta.version, features=x, label=y,
                                             served=True, score=0.6))
    # A challenger trained on the examples since the (supposed) change point at offset 0.
    learner._start_challenger(learner.lines[0], 20, 0, "adwin", StepResult())
    caps = [first_step(line.model) for line in learner.lines]
    assert len(caps) == 2 and all(isinstance(c, FeatureCap) for c in caps)
    assert {(c.max_categories, c.max_features) for c in caps} == {(7, 70)}
    none = Learner(Settings(state_dir=tmp_path, signing_key="a-long-enough-test-key",
                            processing=ProcessingSettings(max_categories=0, max_features=0)))
    assert not isinstance(first_step(none.first_version()[2]), FeatureCap)
