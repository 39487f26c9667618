"""The signing key of a state directory: made once, by what needs it, readable by its owner only."""

from __future__ import annotations

from pathlib import Path

from driftway.io.keys import with_signing_key
from driftway.settings import Settings


def test_a_configured_key_is_used_as_it_is(tmp_path: Path) -> None:
    explicit = Settings(state_dir=tmp_path, signing_key="a-long-enough-secret-key")
    assert with_signing_key(explicit) is explicit
    assert not (tmp_path / "signing.key").exists()


def test_each_state_directory_has_its_own_key_made_once(tmp_path: Path) -> None:
    key = with_signing_key(Settings(state_dir=tmp_path)).signing_key_bytes
    assert len(key) == 64
    assert with_signing_key(Settings(state_dir=tmp_path)).signing_key_bytes == key
    assert (tmp_path / "signing.key").stat().st_mode & 0o077 == 0  # owner only
    assert [p.name for p in tmp_path.iterdir()] == ["signing.key"]  # no temporary file left
    assert with_signing_key(Settings(state_dir=tmp_path / "other")).signing_key_bytes != key
