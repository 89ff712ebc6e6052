"""The secret key at the edge: read it (file or environment, never echoed) and create it (``outcomes keygen``).

A key file may not live inside the project or any git work tree, where it could be committed.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping as MappingABC
from pathlib import Path

from analysis.deidentify.pseudonyms import key_fingerprint
from analysis.errors import InputError
from analysis.paths import check_outside_repositories

KEY_ENV = "OUTCOMES_KEY"
KEY_FILE_ENV = "OUTCOMES_KEY_FILE"
KEY_BYTES = 32
KEYGEN_HINT = "run `outcomes keygen --out ~/.config/outcomes/key` once, then pass --key-file ~/.config/outcomes/key"


def _parse_key(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise InputError(f"{where}: the key must be hex digits (as written by `outcomes keygen`)") from None
    if len(key) < 16:
        raise InputError(f"{where}: the key is too short ({len(key)} bytes, need at least 16); {KEYGEN_HINT}")
    if len(set(key)) < 8:
        # all zeros, one repeated byte, "0123..." typed by hand: anyone could guess it and undo the pseudonyms
        raise InputError(
            f"{where}: the key is weak (only {len(set(key))} distinct byte values); make a random one: {KEYGEN_HINT}"
        )
    return key


def load_key(key_file: Path | None = None, environ: MappingABC[str, str] | None = None) -> bytes:
    """The secret key: ``key_file``, else $OUTCOMES_KEY (hex), else $OUTCOMES_KEY_FILE. Never echoed."""
    env = os.environ if environ is None else environ
    path = key_file or (Path(env[KEY_FILE_ENV]).expanduser() if env.get(KEY_FILE_ENV) else None)
    if key_file is None and env.get(KEY_ENV):
        return _parse_key(env[KEY_ENV], f"${KEY_ENV}")
    if path is None:
        raise InputError(f"no de-identification key: {KEYGEN_HINT} (or set ${KEY_ENV} / ${KEY_FILE_ENV})")
    path = Path(path).expanduser()
    check_outside_repositories(path, "the key file", "move it outside every repository (e.g. ~/.config/outcomes/key)")
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise InputError(f"{path}: key file not found; {KEYGEN_HINT}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the key file ({exc.__class__.__name__})") from None
    return _parse_key(text, str(path))


def run_keygen(path: Path) -> str:
    """Create a new random key file (32 bytes, hex), mode 0600, outside the project; never print the key."""
    path = check_outside_repositories(
        path, "the key", "keep the key outside every repository, e.g. `outcomes keygen --out ~/.config/outcomes/key`"
    )
    if path.exists() or path.is_symlink():
        raise InputError(
            f"{path}: already exists; a new key would change every pseudonym. Keep the old key, "
            "or move it away first if you really mean to start again"
        )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(KEY_BYTES)
    # O_EXCL: never overwrite, even if the file appeared since the check; 0600 from the start.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (key.hex() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
    return (
        f"wrote a new key to {path} (mode 0600, fingerprint {key_fingerprint(key)}). Back it up somewhere "
        "safe: the same key gives the same pseudonyms in every export; never commit or share it."
    )
