"""Registry state: model versions, their signed artifacts and the deployments, without Kafka.

``RegistryState`` is what a reader of the three compacted registry topics knows — versions
(``model-versions``, keyed ``model@version``), artifacts assembled from their chunks
(``model-artifacts``) and the current deployment of each model (``deployments``) — and answers
lineage questions on it. ``driftway.io.registry.ModelRegistry`` feeds it from Kafka. The
functions below compute the next deployment and write versions through any ``Emit``.
"""

from __future__ import annotations

import base64
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from driftway.logic import artifacts
from driftway.schemas.events import (
    ArtifactChunk,
    DeadLetter,
    DeployAction,
    Deployment,
    ModelState,
    ModelVersion,
    failure_reason,
)
from driftway.settings import Settings

#: Something that writes one record: (topic, key, value).
Emit = Callable[[str, str | bytes | None, bytes], None]

#: The topic keys the registry is made of.
REGISTRY_TOPICS = ("model-versions", "model-artifacts", "deployments")


class RegistryError(LookupError):
    """A version or deployment that the registry cannot find; the message says what to do."""


def publish_version(emit: Emit, settings: Settings, meta: ModelVersion, artifact: bytes) -> None:
    """Write a version: its artifact chunks first, then its metadata."""
    for chunk in artifacts.chunks(meta, artifact):
        emit(settings.topic("model-artifacts"), artifacts.chunk_key(chunk), chunk.to_bytes())
    emit(settings.topic("model-versions"), f"{meta.model}@{meta.version}", meta.to_bytes())


def write_deployment(emit: Emit, settings: Settings, deployment: Deployment) -> None:
    """Write a deployment record (the model's new current state)."""
    emit(settings.topic("deployments"), deployment.model, deployment.to_bytes())


def next_deployment(
    current: Deployment | None,
    model: str,
    action: DeployAction,
    version: str,
    reason: str = "",
    by: str = "cli",
) -> Deployment:
    """The deployment that follows `current` after `action` on `version`.

    >>> d = next_deployment(None, "m", "init", "v0")
    >>> d = next_deployment(d, "m", "shadow", "v1")
    >>> d.champion, d.shadows
    ('v0', ['v1'])
    >>> d.previous is None  # a shadow change keeps the champion's history as it was
    True
    >>> d = next_deployment(d, "m", "promote", "v1")
    >>> d.champion, d.shadows, d.previous
    ('v1', [], 'v0')
    >>> next_deployment(d, "m", "rollback", "v0").champion
    'v0'
    """
    champion = current.champion if current else None
    shadows = list(current.shadows) if current else []
    if action in ("init", "deploy", "promote", "rollback"):
        new_champion = version
        shadows = [s for s in shadows if s != version]
    elif action == "shadow":
        if champion is None:
            raise RegistryError(f"model {model!r} has no champion; deploy one before a shadow")
        if version == champion:
            raise RegistryError(f"{version[:12]} is the champion of {model!r}, not a shadow")
        new_champion = champion
        shadows = [*shadows, version] if version not in shadows else shadows
    elif action == "unshadow":
        if champion is None or version not in shadows:
            raise RegistryError(f"{version[:12]} is not a shadow of {model!r}")
        new_champion = champion
        shadows = [s for s in shadows if s != version]
    else:  # "update" replaces one line's version: see update_deployment
        raise ValueError(f"use update_deployment for {action!r}")
    # `previous` is the champion before the last change of champion: shadow changes carry it
    # forward, so a rollback finds it even after compaction kept only the latest record.
    previous = champion if new_champion != champion else (current.previous if current else None)
    return Deployment(
        model=model, champion=new_champion, shadows=shadows, action=action, version=version,
        previous=previous, reason=reason, by=by, ts=datetime.now(UTC))


def update_deployment(current: Deployment, old: str, new: str, reason: str) -> Deployment | None:
    """`current` with version `old` (champion or shadow) replaced by its successor `new`.

    None when `old` is no longer deployed (someone deployed something else meanwhile).

    >>> d = next_deployment(next_deployment(None, "m", "init", "a"), "m", "shadow", "b")
    >>> update_deployment(d, "b", "b2", "1000 examples").shadows
    ['b2']
    >>> update_deployment(d, "zz", "z2", "") is None
    True
    """
    if old == current.champion:
        champion, shadows = new, list(current.shadows)
    elif old in current.shadows:
        champion, shadows = current.champion, [new if s == old else s for s in current.shadows]
    else:
        return None
    previous = current.champion if champion != current.champion else current.previous
    return Deployment(
        model=current.model, champion=champion, shadows=shadows, action="update", version=new,
        previous=previous, reason=reason, by="learner", ts=datetime.now(UTC))


class RegistryState:
    """Versions, artifacts and deployments as the registry topics have told them so far.

    Not thread-safe: one owner applies records (scoring runs its registry in a thread of its own).
    """

    def __init__(self, settings: Settings, max_artifact_bytes: int = 512 * 1024 * 1024) -> None:
        self.settings = settings
        self.versions: dict[str, ModelVersion] = {}
        self.coordinates: dict[str, tuple[str, int, int, bytes]] = {}
        self.deployments: dict[str, Deployment] = {}
        self.history: dict[str, list[Deployment]] = {}
        self.live: dict[str, ModelState] = {}  # the latest live update of each model
        self.invalid: list[DeadLetter] = []
        #: Versions whose artifact chunks were tombstoned by the retention rule (``prunable``).
        self.pruned: set[str] = set()
        #: Versions with artifact chunks on the topic (whole or not, in memory or evicted).
        self.stored: set[str] = set()
        self._chunks: dict[str, dict[int, bytes]] = {}
        self._artifacts: OrderedDict[str, bytes] = OrderedDict()
        self._artifact_bytes = 0
        self._max_artifact_bytes = max_artifact_bytes

    @property
    def key(self) -> bytes:
        """The key that verifies artifacts (raises SettingsError when none is configured)."""
        return self.settings.signing_key_bytes

    def apply(self, kind: str, topic: str, partition: int, offset: int, key: bytes | None,
              value: bytes | None) -> str | None:
        """Take one record of a registry topic (`kind` is its topic key); the model whose
        deployment it changed, if any. A record that does not decode is kept in `invalid`."""
        if value is None:  # a compaction tombstone: of an artifact chunk, the version is pruned
            if kind == "model-artifacts" and key is not None:
                self._forget_artifact(chunk_version(key))
            return None
        try:
            if kind == "model-versions":
                meta = ModelVersion.model_validate_json(value)
                self.versions[meta.version] = meta
                self.coordinates[meta.version] = (topic, partition, offset, value)
            elif kind == "model-artifacts":
                self._add_chunk(ArtifactChunk.model_validate_json(value))
            elif kind == "model-updates":
                state = ModelState.from_bytes(value)
                self.live[state.model] = state
                return None
            else:
                deployment = Deployment.model_validate_json(value)
                self.deployments[deployment.model] = deployment
                self.history.setdefault(deployment.model, []).append(deployment)
                return deployment.model
        except Exception as exc:  # one bad record is reported, never fatal to the registry
            self.invalid.append(DeadLetter.of("registry", topic, partition, offset, key, value,
                                              failure_reason(exc)))
        return None

    def _add_chunk(self, chunk: ArtifactChunk) -> None:
        self.stored.add(chunk.version)
        self.pruned.discard(chunk.version)  # published again (a replay makes the same version)
        if chunk.version in self._artifacts:
            return
        parts = self._chunks.setdefault(chunk.version, {})
        parts[chunk.index] = base64.b64decode(chunk.data_b64)
        if len(parts) == chunk.count:
            data = b"".join(parts[i] for i in range(chunk.count))
            del self._chunks[chunk.version]
            self._artifacts[chunk.version] = data
            self._artifact_bytes += len(data)
            while self._artifact_bytes > self._max_artifact_bytes and len(self._artifacts) > 1:
                _, evicted = self._artifacts.popitem(last=False)
                self._artifact_bytes -= len(evicted)

    def _forget_artifact(self, version: str) -> None:
        """A chunk of `version` was tombstoned: its artifact is gone from the topic."""
        if not version:
            return
        self.pruned.add(version)
        self.stored.discard(version)
        self._chunks.pop(version, None)
        data = self._artifacts.pop(version, None)
        if data is not None:
            self._artifact_bytes -= len(data)

    def artifact(self, version: str) -> bytes | None:
        """The complete artifact of a version, if it has arrived (or, evicted, can be re-read)."""
        if version in self._artifacts:
            self._artifacts.move_to_end(version)
            return self._artifacts[version]
        meta = self.versions.get(version)
        if meta is None or version in self._chunks or version in self.pruned:
            return None
        return self._reread(meta)

    def unavailable(self, meta: ModelVersion) -> RegistryError:
        """Why the artifact of `meta` cannot be had (when `artifact` gave None), as an error."""
        name = f"{meta.model}@{meta.version[:12]}"
        if meta.version in self.pruned:
            return RegistryError(
                f"the artifact of {name} was pruned by the registry's retention rule (setting "
                "registry.prune, DRIFTWAY_REGISTRY__PRUNE): it was neither deployed nor needed "
                "to reproduce a stored prediction. Its metadata and lineage are kept, its model "
                "is not; deploy a version that still has its artifact (`driftway models list`)")
        return RegistryError(f"the artifact of {name} has not arrived")

    def _reread(self, meta: ModelVersion) -> bytes | None:
        """An evicted artifact read again from its source; state alone has none."""
        return None

    def load(self, version: str) -> Any:
        """The model of a version, verified (raises ArtifactRefused, or RegistryError)."""
        meta = self.versions.get(version)
        if meta is None:
            raise RegistryError(f"no version {version[:12]} in the registry")
        data = self.artifact(version)
        if data is None:
            raise self.unavailable(meta)
        return artifacts.load(meta, data, self.key)

    def refusal(self, processor: str, refused: artifacts.ArtifactRefused) -> DeadLetter:
        """A dead letter for a refused artifact: its metadata record, and why."""
        topic, partition, offset, value = self.coordinates.get(
            refused.meta.version,
            (self.settings.topic("model-versions"), 0, -1, refused.meta.to_bytes()))
        return DeadLetter.of(processor, topic, partition, max(offset, 0),
                             f"{refused.meta.model}@{refused.meta.version}", value, str(refused))

    def resolve(self, prefix: str, model: str | None = None) -> ModelVersion:
        """The version whose id starts with `prefix` (unique), optionally of one model."""
        hits = [v for k, v in self.versions.items()
                if k.startswith(prefix) and (model is None or v.model == model)]
        if not hits:
            raise RegistryError(f"no model version starts with {prefix!r}; "
                                "see `driftway models list`")
        if len(hits) > 1:
            raise RegistryError(f"{prefix!r} matches {len(hits)} versions; give more characters")
        return hits[0]

    def lineage(self, version: str) -> list[ModelVersion]:
        """The version, its parent, its parent's parent… back to the first."""
        chain: list[ModelVersion] = []
        seen: set[str] = set()
        current: str | None = version
        while current is not None and current in self.versions and current not in seen:
            seen.add(current)
            chain.append(self.versions[current])
            current = self.versions[current].parent
        return chain

    def children(self, version: str) -> Iterable[ModelVersion]:
        """Versions whose parent is `version`."""
        return (v for v in self.versions.values() if v.parent == version)

    def latest_descendant(self, version: str) -> ModelVersion:
        """Follow the line from `version` through the learner's later publications.

        At each step, the child that covers the most training offsets; where a line was
        published but not yet deployed (a crash in between, or auto_update off), this finds it.
        """
        current = self.versions[version]
        seen = {version}
        while True:
            kids = [c for c in self.children(current.version)
                    if c.training_offsets is not None and c.version not in seen]
            if not kids:
                return current
            current = max(kids, key=lambda c: c.training_offsets.end)  # type: ignore[union-attr]
            seen.add(current.version)


# -- retention: which versions keep their artifacts ------------------------------------------

#: How long a version keeps its artifact after it was published or superseded, by default.
GRACE = timedelta(hours=1)


def chunk_version(key: bytes | str) -> str:
    """The version an artifact chunk's Kafka key (``model@version/index``) names; '' if none.

    >>> chunk_version(b"default@3f2a9c/0"), chunk_version("no-key")
    ('3f2a9c', '')
    """
    text = key.decode(errors="replace") if isinstance(key, bytes) else key
    head, slash, _index = text.rpartition("/")
    return head.rpartition("@")[2] if slash and "@" in head else ""


def kept(state: RegistryState, model: str, needed: set[str], now: datetime,
         grace: timedelta = GRACE) -> dict[str, str]:
    """The versions of `model` whose artifacts the retention rule keeps, each with why.

    Kept: the current deployment's champion and shadows, and its previous champion (what
    `driftway models rollback` returns to); the latest published descendant of each deployed
    version (where the learner resumes that line after a restart); every version in `needed`
    (named by a stored prediction: reproducing it needs that version's artifact — the caller
    adds the versions deployed within `grace`, whose predictions may still be on their way);
    and every version published, or superseded by a child, within `grace` of `now`.

    Version zero is not kept for being first: nothing loads it once its line has learned (a
    restart resumes from the latest descendant, a challenger starts from a fresh model), and a
    learner that finds nothing deployed publishes it again.

    >>> from driftway.settings import Settings
    >>> state = RegistryState(Settings())
    >>> for v, parent in [("v0", None), ("v1", "v0"), ("v2", "v1")]:
    ...     meta = ModelVersion(model="m", version=v, parent=parent,
    ...                         created_at=datetime(2026, 1, 1, tzinfo=UTC))
    ...     _ = state.apply("model-versions", "t", 0, 0, None, meta.to_bytes())
    >>> state.deployments["m"] = next_deployment(None, "m", "init", "v2")
    >>> kept(state, "m", {"v0"}, datetime(2026, 1, 2, tzinfo=UTC))
    {'v2': 'champion', 'v0': 'named by a stored prediction'}
    """
    versions = {v.version: v for v in state.versions.values() if v.model == model}
    keep: dict[str, str] = {}

    def add(version: str | None, why: str) -> None:
        if version is not None and version in versions and version not in keep:
            keep[version] = why

    deployment = state.deployments.get(model)
    deployed = [] if deployment is None else [deployment.champion, *deployment.shadows]
    if deployment is not None:
        add(deployment.champion, "champion")
        for shadow in deployment.shadows:
            add(shadow, "shadow")
        add(deployment.previous, "previous champion (the rollback target)")
    for version in deployed:
        if version in versions:
            add(state.latest_descendant(version).version,
                f"latest descendant of the deployed {version[:12]}")
    for version in sorted(needed):
        add(version, "named by a stored prediction")
    for meta in sorted(versions.values(), key=lambda v: v.created_at):
        if now - meta.created_at < grace:
            add(meta.version, "published within the grace period")
            add(meta.parent, "superseded within the grace period")
    return keep


def prunable(state: RegistryState, model: str, needed: set[str], now: datetime,
             grace: timedelta = GRACE) -> list[ModelVersion]:
    """The versions of `model` whose artifacts the retention rule prunes, oldest first: those
    whose chunks are still on the topic and that `kept` does not keep. Their metadata (and so
    the lineage) stays on the versions topic: only the artifact chunks are tombstoned."""
    keep = kept(state, model, needed, now, grace)
    return sorted((v for v in state.versions.values() if v.model == model
                   and v.version in state.stored and v.version not in keep),
                  key=lambda v: (v.created_at, v.version))


def tombstones(meta: ModelVersion) -> list[tuple[str, str]]:
    """(topic key, Kafka key) of each artifact chunk of `meta`: written without a value, they
    prune the artifact (compaction then drops its chunks).

    >>> meta = ModelVersion(model="m", version="ab", created_at=datetime.now(UTC),
    ...                     artifact_chunks=2)
    >>> tombstones(meta)
    [('model-artifacts', 'm@ab/0'), ('model-artifacts', 'm@ab/1')]
    """
    count = max(1, meta.artifact_chunks)
    return [("model-artifacts", artifacts.chunk_key(ArtifactChunk(
        model=meta.model, version=meta.version, index=i, count=count, data_b64="")))
        for i in range(count)]
