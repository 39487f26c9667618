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
from datetime import UTC, datetime
from typing import Any

from driftway.logic import artifacts
from driftway.schemas.events import (
    ArtifactChunk,
    DeadLetter,
    DeployAction,
    Deployment,
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
        self.invalid: list[DeadLetter] = []
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
        if value is None:  # a compaction tombstone
            return None
        try:
            if kind == "model-versions":
                meta = ModelVersion.model_validate_json(value)
                self.versions[meta.version] = meta
                self.coordinates[meta.version] = (topic, partition, offset, value)
            elif kind == "model-artifacts":
                self._add_chunk(ArtifactChunk.model_validate_json(value))
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

    def artifact(self, version: str) -> bytes | None:
        """The complete artifact of a version, if it has arrived (or, evicted, can be re-read)."""
        if version in self._artifacts:
            self._artifacts.move_to_end(version)
            return self._artifacts[version]
        meta = self.versions.get(version)
        if meta is None or version in self._chunks:
            return None
        return self._reread(meta)

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
            raise RegistryError(f"the artifact of {meta.model}@{version[:12]} has not arrived")
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
