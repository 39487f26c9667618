"""The artifact signing key of a state directory, made once, at start-up, by what needs it."""

from __future__ import annotations

import os
import secrets

from pydantic import SecretStr

from driftway.settings import Settings


def with_signing_key(settings: Settings) -> Settings:
    """These settings with a signing key: the configured one, or the state directory's own.

    The first process that needs the state directory's key creates it (0600, random); processes
    starting at the same moment agree on one, since only the first link succeeds.

    >>> import tempfile
    >>> state = tempfile.mkdtemp()
    >>> first = with_signing_key(Settings(state_dir=state)).signing_key_bytes
    >>> len(first), with_signing_key(Settings(state_dir=state)).signing_key_bytes == first
    (64, True)
    """
    if settings.signing_key is not None:
        return settings
    path = settings.state_dir / "signing.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # atomic: the first writer wins, everyone reads its key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = SecretStr(path.read_text().strip())
    return settings.model_copy(update={"signing_key": key})
