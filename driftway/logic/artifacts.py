"""Model artifacts: content-addressed, signed, checked before they are deserialised.

An artifact is the pickled model. Its version id is the artifact's SHA-256; its signature is an
HMAC-SHA256 under the signing key (a secret setting). ``load`` verifies size, hash and signature
before ``pickle.loads`` ever sees the bytes, so an unsigned or tampered artifact is refused.

>>> meta, data = build_version("m", {"w": 1.0}, key=b"k" * 16, parent=None)
>>> meta.version == hashlib.sha256(data).hexdigest(), load(meta, data, b"k" * 16)
(True, {'w': 1.0})
>>> load(meta, data, b"another key12345")
Traceback (most recent call last):
...
driftway.logic.artifacts.ArtifactRefused: m@... refused: signature does not verify (tampered, ...)
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import pickle
import platform
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from driftway.schemas.events import ArtifactChunk, LineState, ModelVersion, TrainingOffsets

#: Libraries whose versions every model version records (they decide whether it loads).
LIBRARIES = ("river", "numpy", "scikit-learn", "scipy", "driftway")


class ArtifactRefused(Exception):
    """An artifact that must not be loaded; the message says why."""

    def __init__(self, meta: ModelVersion, reason: str) -> None:
        super().__init__(f"{meta.model}@{meta.version[:12]} refused: {reason}")
        self.meta = meta
        self.reason = reason


def serialize(model: Any) -> bytes:
    """The artifact of a model: its pickle (deterministic when PYTHONHASHSEED is fixed)."""
    return pickle.dumps(model, protocol=5)


def version_of(artifact: bytes) -> str:
    """A version id: the artifact's SHA-256."""
    return hashlib.sha256(artifact).hexdigest()


def sign(artifact: bytes, key: bytes) -> str:
    """HMAC-SHA256 of the artifact under the signing key, hex."""
    return hmac.new(key, artifact, hashlib.sha256).hexdigest()


@functools.cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    found = [("python", platform.python_version())]
    for name in LIBRARIES:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(found)


def library_versions() -> dict[str, str]:
    """Versions of the libraries a model depends on, and the Python that pickled it (read
    once per process: reading package metadata took longer than pickling a model)."""
    return dict(_installed_versions())


def build_version(
    model_name: str,
    model: Any,
    key: bytes,
    parent: str | None,
    *,
    reason: str = "",
    training_offsets: TrainingOffsets | None = None,
    examples_seen: int = 0,
    hyperparameters: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    chunk_bytes: int = 512 * 1024,
) -> tuple[ModelVersion, bytes]:
    """The signed metadata and the artifact of one new version of `model`."""
    artifact = serialize(model)
    meta = ModelVersion(
        model=model_name,
        version=version_of(artifact),
        parent=parent,
        created_at=datetime.now(UTC),
        reason=reason,
        training_offsets=training_offsets,
        examples_seen=examples_seen,
        hyperparameters=hyperparameters or {},
        metrics=metrics or {},
        libraries=library_versions(),
        artifact_size=len(artifact),
        artifact_chunks=max(1, -(-len(artifact) // chunk_bytes)),
        signature=sign(artifact, key),
    )
    return meta, artifact


def chunks(meta: ModelVersion, artifact: bytes) -> list[ArtifactChunk]:
    """The artifact cut into ``meta.artifact_chunks`` records for the artifacts topic."""
    n = meta.artifact_chunks
    size = -(-len(artifact) // n) if artifact else 0
    return [
        ArtifactChunk(model=meta.model, version=meta.version, index=i, count=n,
                      data_b64=base64.b64encode(artifact[i * size:(i + 1) * size]).decode())
        for i in range(n)
    ]


def chunk_key(chunk: ArtifactChunk) -> str:
    """Kafka key of a chunk (distinct per chunk, so compaction keeps every one)."""
    return f"{chunk.model}@{chunk.version}/{chunk.index}"


def verify(meta: ModelVersion, artifact: bytes, key: bytes) -> None:
    """Raise ArtifactRefused unless the artifact is the signed content its metadata names."""
    if not meta.signature:
        raise ArtifactRefused(meta, "unsigned artifact")
    if len(artifact) != meta.artifact_size:
        raise ArtifactRefused(
            meta, f"artifact is {len(artifact)} bytes, its metadata says {meta.artifact_size}")
    if version_of(artifact) != meta.version:
        raise ArtifactRefused(meta, "artifact content does not match its version (SHA-256)")
    if not hmac.compare_digest(sign(artifact, key), meta.signature):
        raise ArtifactRefused(
            meta, "signature does not verify (tampered, or signed with another key)")


def load(meta: ModelVersion, artifact: bytes, key: bytes) -> Any:
    """The model of a verified artifact (verification first: pickle runs only on signed bytes)."""
    verify(meta, artifact, key)
    return pickle.loads(artifact)  # noqa: S301 - signed by our own key, verified above


def deterministic_hashing() -> bool:
    """True when string hashing is fixed, so equal models pickle to equal bytes."""
    return os.environ.get("PYTHONHASHSEED") not in (None, "", "random")


# -- live states: a line's model between two releases ------------------------------------------


class StateRefused(Exception):
    """A live state that must not be unpickled (bad signature); the message says why."""


def _state_header(model_name: str, line: LineState) -> bytes:
    return (f"{model_name}\0{line.slot}\0{line.version}\0{line.trained_from}\0"
            f"{line.trained_through}\0{line.examples_seen}\0").encode()


def line_state(model_name: str, slot: str, version: str, trained_from: int,
               trained_through: int, examples_seen: int, model: Any, key: bytes) -> LineState:
    """A signed live state of one line (the signature covers what it claims and its bytes).

    >>> s = line_state("m", "v1", "v1", 10, 12, 7, {"w": 2.0}, b"k" * 16)
    >>> load_state("m", s, b"k" * 16), s.trained_through
    ({'w': 2.0}, 12)
    >>> load_state("m", s, b"another key12345")
    Traceback (most recent call last):
    ...
    driftway.logic.artifacts.StateRefused: live state of m@v1 (through offset 12) refused: ...
    """
    data = serialize(model)
    unsigned = LineState(slot=slot, version=version, trained_from=trained_from,
                         trained_through=trained_through, examples_seen=examples_seen,
                         state=data, signature="")
    signature = sign(_state_header(model_name, unsigned) + data, key)
    return LineState(slot=slot, version=version, trained_from=trained_from,
                     trained_through=trained_through, examples_seen=examples_seen,
                     state=data, signature=signature)


def load_state(model_name: str, line: LineState, key: bytes) -> Any:
    """The model of a live state, verified first (pickle runs only on signed bytes)."""
    expected = sign(_state_header(model_name, line) + line.state, key)
    if not hmac.compare_digest(expected, line.signature):
        raise StateRefused(
            f"live state of {model_name}@{line.slot[:12]} (through offset "
            f"{line.trained_through}) refused: signature does not verify (tampered, or signed "
            "with another key)")
    return pickle.loads(line.state)  # noqa: S301 - signed by our own key, verified above
