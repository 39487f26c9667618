"""Registry state from its three topics' records, lineage, and the next deployment."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta

import pytest

from driftway.logic import artifacts
from driftway.logic.registry import (
    RegistryError,
    RegistryState,
    kept,
    next_deployment,
    prunable,
    tombstones,
    update_deployment,
)
from driftway.schemas.events import ArtifactChunk, Deployment, ModelVersion, TrainingOffsets
from driftway.settings import Settings

KEY = "0123456789abcdef-registry-test"
SETTINGS = Settings(signing_key=KEY)
VERSIONS, ARTIFACTS, DEPLOYMENTS = (SETTINGS.topic(k) for k in (
    "model-versions", "model-artifacts", "deployments"))


def built(model: object, parent: str | None = None, chunk_bytes: int = 512 * 1024
          ) -> tuple[ModelVersion, bytes]:
    return artifacts.build_version("m", model, KEY.encode(), parent, chunk_bytes=chunk_bytes)


def publish(state: RegistryState, meta: ModelVersion, artifact: bytes, offset: int = 0) -> None:
    """Apply a version's chunks and metadata, as the registry topics deliver them."""
    for chunk in artifacts.chunks(meta, artifact):
        state.apply("model-artifacts", ARTIFACTS, 0, chunk.index, None, chunk.to_bytes())
    state.apply("model-versions", VERSIONS, 0, offset, None, meta.to_bytes())


def version(name: str, parent: str | None, end: int | None = None) -> ModelVersion:
    offsets = None if end is None else TrainingOffsets(topic="t", start=0, end=end)
    return ModelVersion(model="m", version=name, parent=parent, training_offsets=offsets,
                        created_at=datetime(2026, 1, 1, tzinfo=UTC))


def state_of(*versions: ModelVersion) -> RegistryState:
    state = RegistryState(SETTINGS)
    for offset, v in enumerate(versions):
        state.apply("model-versions", VERSIONS, 0, offset, None, v.to_bytes())
    return state


def test_versions_and_deployments_are_applied_with_their_coordinates() -> None:
    meta, _ = built({"w": [1.0, 2.0]})
    state = RegistryState(SETTINGS)
    assert state.apply("model-versions", VERSIONS, 0, 7, b"m@v", meta.to_bytes()) is None
    assert state.versions[meta.version] == meta
    assert state.coordinates[meta.version] == (VERSIONS, 0, 7, meta.to_bytes())
    first = next_deployment(None, "m", "init", meta.version)
    second = next_deployment(first, "m", "shadow", "other")
    for offset, d in enumerate((first, second)):
        assert state.apply("deployments", DEPLOYMENTS, 0, offset, b"m", d.to_bytes()) == "m"
    assert state.deployments["m"] == second and state.history["m"] == [first, second]
    assert state.apply("deployments", DEPLOYMENTS, 0, 2, b"m", None) is None  # a tombstone
    assert state.deployments["m"] == second and state.invalid == []


def test_an_artifact_is_assembled_from_its_chunks_in_any_order() -> None:
    model = {"weights": [random.Random(0).random() for _ in range(300)]}
    meta, artifact = built(model, chunk_bytes=500)
    chunks = artifacts.chunks(meta, artifact)
    assert len(chunks) > 3
    random.Random(1).shuffle(chunks)
    state = RegistryState(SETTINGS)
    state.apply("model-versions", VERSIONS, 0, 0, None, meta.to_bytes())
    for i, chunk in enumerate(chunks):
        assert state.artifact(meta.version) is None  # incomplete
        state.apply("model-artifacts", ARTIFACTS, 0, i, None, chunk.to_bytes())
    assert state.artifact(meta.version) == artifact
    # A redelivered chunk after assembly changes nothing.
    state.apply("model-artifacts", ARTIFACTS, 0, 99, None, chunks[0].to_bytes())
    assert state.artifact(meta.version) == artifact
    assert state.load(meta.version) == model


def test_a_tampered_artifact_is_refused_on_load() -> None:
    meta, artifact = built({"w": 1.0})
    [chunk] = artifacts.chunks(meta, artifact)
    forged = chunk.model_copy(update={"data_b64": base64.b64encode(artifact[:-1] + b"!").decode()})
    state = RegistryState(SETTINGS)
    state.apply("model-artifacts", ARTIFACTS, 0, 0, None, forged.to_bytes())
    state.apply("model-versions", VERSIONS, 0, 0, None, meta.to_bytes())
    with pytest.raises(artifacts.ArtifactRefused, match="does not match its version"):
        state.load(meta.version)
    with pytest.raises(RegistryError, match="no version"):
        state.load("f" * 64)


def test_artifacts_beyond_the_memory_bound_are_evicted_oldest_first() -> None:
    (old, old_bytes), (new, new_bytes) = built({"w": 1.0}), built({"w": 2.0})
    state = RegistryState(SETTINGS, max_artifact_bytes=len(old_bytes) + len(new_bytes) - 1)
    publish(state, old, old_bytes)
    publish(state, new, new_bytes, offset=1)
    assert state.artifact(new.version) == new_bytes
    assert state.artifact(old.version) is None  # state alone cannot read it again
    with pytest.raises(RegistryError, match="has not arrived"):
        state.load(old.version)


@pytest.mark.parametrize("kind", ["model-versions", "model-artifacts", "deployments"])
@pytest.mark.parametrize("value", [b"not json", b'{"model": "m"}', b"[" * 10_000])
def test_an_invalid_record_is_kept_not_raised(kind: str, value: bytes) -> None:
    state = RegistryState(SETTINGS)
    assert state.apply(kind, SETTINGS.topic(kind), 0, 41, b"k", value) is None
    [letter] = state.invalid
    assert (letter.processor, letter.source_topic, letter.source_offset, letter.key) == (
        "registry", SETTINGS.topic(kind), 41, "k")
    assert base64.b64decode(letter.payload_b64) == value and letter.error
    assert state.versions == {} and state.deployments == {}
    # The state goes on: a valid record after it is applied.
    meta, artifact = built({"w": 2.0})
    publish(state, meta, artifact)
    assert state.load(meta.version) == {"w": 2.0}


def test_lineage_and_the_latest_descendant_follow_the_parents() -> None:
    # a ─ b ─ c      (c covers the most offsets: the line's latest)
    #      └─ d      (a sibling of c that covers fewer)
    state = state_of(version("a", None), version("b", "a", 100), version("c", "b", 300),
                     version("d", "b", 200))
    assert [v.version for v in state.lineage("c")] == ["c", "b", "a"]
    assert [v.version for v in state.lineage("a")] == ["a"]
    assert state.latest_descendant("a").version == "c"
    assert state.latest_descendant("d").version == "d"


def test_lineage_stops_at_a_missing_parent_or_a_loop() -> None:
    state = state_of(version("x", "gone"), version("p", "q"), version("q", "p"))
    assert [v.version for v in state.lineage("x")] == ["x"]
    assert [v.version for v in state.lineage("p")] == ["p", "q"]
    assert state.lineage("nope") == []


def test_the_latest_descendant_stops_at_a_loop() -> None:
    state = state_of(version("p", "q", 10), version("q", "p", 20))
    assert state.latest_descendant("p").version == "q"  # and does not go round for ever


def test_a_chunk_outside_its_count_is_invalid_and_the_artifact_still_assembles() -> None:
    meta, artifact = built({"w": [float(i) for i in range(4000)]}, chunk_bytes=4096)
    [first, *rest] = artifacts.chunks(meta, artifact)
    state = RegistryState(SETTINGS)
    stray = first.model_copy(update={"index": first.count})  # one past the last
    state.apply("model-artifacts", ARTIFACTS, 0, 0, None, stray.to_bytes())
    [letter] = state.invalid
    assert "not below its count" in letter.error
    for i, chunk in enumerate([first, *rest], 1):
        state.apply("model-artifacts", ARTIFACTS, 0, i, None, chunk.to_bytes())
    state.apply("model-versions", VERSIONS, 0, 0, None, meta.to_bytes())
    assert state.artifact(meta.version) == artifact


def test_resolve_a_unique_prefix() -> None:
    state = state_of(version("abc1", None), version("abd2", None),
                     version("zz", None).model_copy(update={"model": "other"}))
    assert state.resolve("abc").version == "abc1"
    with pytest.raises(RegistryError, match="matches 2 versions"):
        state.resolve("ab")
    with pytest.raises(RegistryError, match="no model version starts with 'q'"):
        state.resolve("q")
    with pytest.raises(RegistryError):
        state.resolve("zz", model="m")
    assert state.resolve("zz", model="other").model == "other"


def test_next_deployment_keeps_the_previous_champion_for_a_rollback() -> None:
    d = next_deployment(None, "m", "init", "v1")
    assert (d.champion, d.shadows, d.previous) == ("v1", [], None)
    d = next_deployment(d, "m", "shadow", "v2")
    assert next_deployment(d, "m", "shadow", "v2").shadows == ["v2"]  # no duplicate
    d = next_deployment(d, "m", "promote", "v2", reason="better", by="policy")
    assert (d.champion, d.shadows, d.previous, d.by) == ("v2", [], "v1", "policy")
    d = next_deployment(d, "m", "shadow", "v3")
    assert d.previous == "v1"  # a shadow change carries the champion's history
    d = next_deployment(d, "m", "rollback", d.previous or "")
    assert (d.champion, d.shadows, d.previous) == ("v1", ["v3"], "v2")
    assert next_deployment(d, "m", "unshadow", "v3").shadows == []


@pytest.mark.parametrize(("current", "action", "version", "error"), [
    (None, "shadow", "v1", "has no champion"),
    ("v1", "shadow", "v1", "is the champion"),
    ("v1", "unshadow", "v2", "is not a shadow"),
])
def test_impossible_deployments_are_refused(current: str | None, action: str, version: str,
                                           error: str) -> None:
    base = None if current is None else next_deployment(None, "m", "init", current)
    with pytest.raises(RegistryError, match=error):
        next_deployment(base, "m", action, version)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="update_deployment"):
        next_deployment(base, "m", "update", version)


def test_update_deployment_replaces_one_line_or_nothing() -> None:
    d: Deployment = next_deployment(next_deployment(None, "m", "init", "a"), "m", "shadow", "b")
    champion = update_deployment(d, "a", "a2", "1000 examples")
    assert champion is not None
    assert (champion.champion, champion.shadows, champion.previous, champion.action,
            champion.by) == ("a2", ["b"], "a", "update", "learner")
    shadow = update_deployment(d, "b", "b2", "1000 examples")
    assert shadow is not None and (shadow.champion, shadow.shadows) == ("a", ["b2"])
    assert shadow.previous is None  # the champion did not change
    assert update_deployment(d, "gone", "g2", "") is None


# -- the retention rule ------------------------------------------------------------------------

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def aged(name: str, parent: str | None, hours: float, end: int | None = None) -> ModelVersion:
    """A version `hours` before NOW, with a one-chunk artifact."""
    offsets = None if end is None else TrainingOffsets(topic="t", start=0, end=end)
    return ModelVersion(model="m", version=name, parent=parent, training_offsets=offsets,
                        created_at=NOW - timedelta(hours=hours), artifact_chunks=1)


def stored_state(*versions: ModelVersion) -> RegistryState:
    """Versions with their (one-chunk, unsigned) artifacts on the topics."""
    state = RegistryState(SETTINGS)
    for offset, v in enumerate(versions):
        chunk = ArtifactChunk(model=v.model, version=v.version, index=0, count=1,
                              data_b64=base64.b64encode(v.version.encode()).decode())
        state.apply("model-artifacts", ARTIFACTS, 0, offset, None, chunk.to_bytes())
        state.apply("model-versions", VERSIONS, 0, offset, None, v.to_bytes())
    return state


def deploy(state: RegistryState, *deployments: Deployment) -> None:
    for offset, d in enumerate(deployments):
        state.apply("deployments", DEPLOYMENTS, 0, offset, b"m", d.to_bytes())


def prune(state: RegistryState, metas: list[ModelVersion]) -> None:
    """Apply the tombstones of `metas`, as the artifacts topic delivers them."""
    for offset, meta in enumerate(metas):
        for topic, key in tombstones(meta):
            state.apply(topic, SETTINGS.topic(topic), 0, 1000 + offset, key.encode(), None)


def test_the_retention_rule_keeps_the_deployed_their_lines_the_needed_and_the_recent() -> None:
    # root ─ old ─ champ ─ ahead          (ahead: champ's line, published, not deployed)
    #            └ side                   (a sibling nothing uses)
    # prev (the champion before), shadow, used (named by a stored prediction),
    # superseded ─ fresh (published 10 minutes ago), and stray, other model's.
    versions = [
        aged("root", None, 90, 0), aged("old", "root", 80, 100), aged("champ", "old", 70, 200),
        aged("ahead", "champ", 60, 300), aged("side", "old", 75, 150), aged("prev", None, 85),
        aged("shadow", None, 50), aged("used", None, 40), aged("superseded", None, 30, 10),
        aged("fresh", "superseded", 1 / 6, 20), aged("stray", None, 20),
        aged("elsewhere", None, 90).model_copy(update={"model": "other"}),
    ]
    state = stored_state(*versions)
    first = next_deployment(None, "m", "init", "prev")
    second = next_deployment(first, "m", "deploy", "champ")
    deploy(state, first, second, next_deployment(second, "m", "shadow", "shadow"))
    assert kept(state, "m", {"used", "elsewhere"}, NOW) == {
        "champ": "champion",
        "shadow": "shadow",
        "prev": "previous champion (the rollback target)",
        "ahead": "latest descendant of the deployed champ",
        "used": "named by a stored prediction",
        "fresh": "published within the grace period",
        "superseded": "superseded within the grace period",
    }
    pruned = prunable(state, "m", {"used"}, NOW)
    assert [v.version for v in pruned] == ["root", "old", "side", "stray"]  # oldest first
    # Version zero (root) is not kept for being first. A longer grace keeps more: side and
    # stray were published within it, and old was superseded by side.
    assert [v.version for v in prunable(state, "m", {"used"}, NOW, timedelta(hours=76))] == [
        "root"]
    assert [v.version for v in prunable(state, "other", set(), NOW)] == ["elsewhere"]
    assert prunable(state, "none", set(), NOW) == []


def test_a_model_never_deployed_keeps_only_what_is_needed_or_recent() -> None:
    state = stored_state(aged("a", None, 5), aged("b", "a", 3), aged("c", "b", 0.5))
    assert kept(state, "m", set(), NOW) == {"c": "published within the grace period",
                                           "b": "superseded within the grace period"}
    assert [v.version for v in prunable(state, "m", set(), NOW)] == ["a"]


def test_a_pruned_artifact_is_forgotten_its_metadata_kept_and_its_load_refused() -> None:
    model = {"weights": [random.Random(2).random() for _ in range(300)]}
    parent, parent_bytes = built({"w": 0.0})
    meta, artifact = built(model, parent=parent.version, chunk_bytes=500)
    state = RegistryState(SETTINGS)
    publish(state, parent, parent_bytes)
    publish(state, meta, artifact, offset=1)
    assert meta.artifact_chunks > 3 and state.load(meta.version) == model
    assert [k for _, k in tombstones(meta)] == [
        artifacts.chunk_key(c) for c in artifacts.chunks(meta, artifact)]
    prune(state, [meta])
    assert meta.version in state.pruned and meta.version not in state.stored
    assert state.artifact(meta.version) is None
    with pytest.raises(RegistryError, match=r"pruned by the registry's retention rule \(setting "
                                            r"registry.prune, DRIFTWAY_REGISTRY__PRUNE\)"):
        state.load(meta.version)
    # Metadata and lineage stay; nothing is pruned twice.
    assert state.versions[meta.version] == meta
    assert [v.version for v in state.lineage(meta.version)] == [meta.version, parent.version]
    later = datetime.now(UTC) + timedelta(hours=2)
    assert [v.version for v in prunable(state, "m", set(), later)] == [parent.version]
    assert state.load(parent.version) == {"w": 0.0}
    # Tombstones applied again (a reader from the start, a round written twice): the same.
    before = (set(state.pruned), set(state.stored), state._artifact_bytes)
    prune(state, [meta, meta])
    assert (set(state.pruned), set(state.stored), state._artifact_bytes) == before
    assert state.invalid == []
    # Published again (a learner replaying makes the same version): it is back.
    publish(state, meta, artifact, offset=2)
    assert meta.version not in state.pruned and state.load(meta.version) == model


def test_a_pruned_artifact_is_not_read_again_and_odd_tombstones_are_ignored() -> None:
    class Counting(RegistryState):
        rereads = 0

        def _reread(self, meta: ModelVersion) -> bytes | None:
            self.rereads += 1
            return None

    (old, old_bytes), (new, new_bytes) = built({"w": 1.0}), built({"w": 2.0})
    state = Counting(SETTINGS, max_artifact_bytes=1)  # keeps one artifact in memory
    publish(state, old, old_bytes)
    publish(state, new, new_bytes, offset=1)
    assert state.artifact(old.version) is None and state.rereads == 1  # evicted: read again
    prune(state, [old])
    assert state.artifact(old.version) is None and state.rereads == 1  # pruned: not
    for key in (b"no-slash", b"no-at/0", None):
        state.apply("model-artifacts", ARTIFACTS, 0, 5, key, None)
    assert state.pruned == {old.version} and state.invalid == []
    assert state.artifact(new.version) == new_bytes
