"""The secret key at the edge: read it (file or environment, never echoed) and create it (``outcomes keygen``).

``outcomes keygen`` writes a key file of three lines::

    outcomes-key 1
    <64 hex digits: 32 random bytes>
    check <8 hex digits: SHA-256 of the header line and the key>

The header names the format and its version; the check line catches a key that was edited, truncated or
typed by hand. $OUTCOMES_KEY takes the same text (newlines or spaces between the parts). Keys written by
earlier versions (the 64 hex digits alone) still load, but only if they look random: a key typed by hand,
the hex of a passphrase or a short key would let anyone who guesses it undo the pseudonyms, so it is
refused with a line saying to run ``outcomes keygen``.

A key file may not live inside the project or any git work tree, where it could be committed, and may not
be readable by other users (the same rule as the signing key, :func:`analysis.paths.check_owner_only`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping as MappingABC
from pathlib import Path

from analysis.deidentify.pseudonyms import key_fingerprint
from analysis.errors import InputError
from analysis.paths import check_outside_repositories, check_owner_only
from analysis.store import make_dirs

KEY_ENV = "OUTCOMES_KEY"
KEY_FILE_ENV = "OUTCOMES_KEY_FILE"
KEY_BYTES = 32
KEY_HEADER = "outcomes-key 1"
KEYGEN_HINT = "run `outcomes keygen --out ~/.config/outcomes/key` once, then pass --key-file ~/.config/outcomes/key"
_HEX = frozenset("0123456789abcdefABCDEF")


def _check(key: bytes) -> str:
    return hashlib.sha256(f"{KEY_HEADER}\n".encode("ascii") + key).hexdigest()[:8]


def key_text(key: bytes) -> str:
    """The key file's text, as ``outcomes keygen`` writes it (header, hex, check line)."""
    return f"{KEY_HEADER}\n{key.hex()}\ncheck {_check(key)}\n"


def _hex_bytes(text: str) -> bytes | None:
    return bytes.fromhex(text) if text and len(text) % 2 == 0 and set(text) <= _HEX else None


def _pattern(key: bytes) -> str | None:
    """Why a bare 32-byte key does not look random, or None. A random key trips none of these
    (each has a chance below about 1e-7: at least 20 distinct bytes, no 4 bytes repeated, no run of 6
    equal steps, not all printable)."""
    if all(0x20 <= b < 0x7F for b in key):
        return "it is the hex of typed text, such as a passphrase"
    if len(set(key)) < 20:
        return f"only {len(set(key))} distinct byte values, so it was not made at random"
    chunks = [key[i : i + 4] for i in range(len(key) - 3)]
    if len(set(chunks)) < len(chunks):
        return "it repeats a sequence, as a key typed by hand does"
    steps = [(key[i + 1] - key[i]) % 256 for i in range(len(key) - 1)]
    if any(len(set(steps[i : i + 5])) == 1 for i in range(len(steps) - 4)):
        return "it counts up or down in equal steps, as a key typed by hand does"
    return None


def parse_key(text: str, where: str) -> bytes:
    """The 32-byte key in ``text`` (a key file's text or $OUTCOMES_KEY), or one line saying to run keygen.

    Accepts the format of ``outcomes keygen`` (see the module docstring), and the bare 64 hex digits of
    keys made by earlier versions when they look random.
    """
    parts = text.split()
    refuse = f"{where}: not a key made by `outcomes keygen`"
    if parts[:2] == KEY_HEADER.split():
        key = _hex_bytes(parts[2]) if len(parts) == 5 and parts[3] == "check" else None
        if key is None or len(key) != KEY_BYTES:
            raise InputError(f"{refuse} (the lines after its header are damaged); {KEYGEN_HINT}")
        if parts[4] != _check(key):
            raise InputError(f"{refuse} (its check line does not match: edited or damaged?); {KEYGEN_HINT}")
        if len(set(key)) < 8:  # all zeros, one repeated byte: anyone could guess it
            raise InputError(f"{where}: the key is weak (only {len(set(key))} distinct byte values); {KEYGEN_HINT}")
        return key
    if parts and parts[0] == "outcomes-key":
        raise InputError(f"{refuse} of this version (header {' '.join(parts[:2])!r}); {KEYGEN_HINT}")
    key = _hex_bytes(parts[0]) if len(parts) == 1 else None
    if key is None:
        raise InputError(f"{refuse} (no '{KEY_HEADER}' header, and not hex digits); {KEYGEN_HINT}")
    if len(key) < KEY_BYTES:
        raise InputError(f"{refuse}: the key is too short ({len(key)} bytes, need {KEY_BYTES}); {KEYGEN_HINT}")
    if len(key) > KEY_BYTES:
        raise InputError(f"{refuse} ({len(key)} bytes, not {KEY_BYTES}: the hex of a passphrase?); {KEYGEN_HINT}")
    why = _pattern(key)
    if why is not None:
        raise InputError(f"{refuse}: the key is weak ({why}); {KEYGEN_HINT}")
    return key


def load_key(key_file: Path | None = None, environ: MappingABC[str, str] | None = None) -> bytes:
    """The secret key: ``key_file``, else $OUTCOMES_KEY (hex), else $OUTCOMES_KEY_FILE. Never echoed."""
    env = os.environ if environ is None else environ
    path = key_file or (Path(env[KEY_FILE_ENV]).expanduser() if env.get(KEY_FILE_ENV) else None)
    if key_file is None and env.get(KEY_ENV):
        return parse_key(env[KEY_ENV], f"${KEY_ENV}")
    if path is None:
        raise InputError(f"no de-identification key: {KEYGEN_HINT} (or set ${KEY_ENV} / ${KEY_FILE_ENV})")
    path = Path(path).expanduser()
    check_outside_repositories(path, "the key file", "move it outside every repository (e.g. ~/.config/outcomes/key)")
    try:
        check_owner_only(path, "the key file")
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise InputError(f"{path}: key file not found; {KEYGEN_HINT}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the key file ({exc.__class__.__name__})") from None
    return parse_key(text, str(path))


def write_key_file(path: Path, key: bytes) -> None:
    """Write ``key`` in keygen's format to a new file, mode 0600 from its first byte; never overwrite one."""
    # O_EXCL: never overwrite, even if the file appeared since the check; 0600 from the start.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key_text(key).encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)  # the umask cannot have widened it, but say so


def run_keygen(path: Path) -> str:
    """Create a new random key file (32 bytes, keygen's format), mode 0600, outside the project; never print it."""
    path = check_outside_repositories(
        path, "the key", "keep the key outside every repository, e.g. `outcomes keygen --out ~/.config/outcomes/key`"
    )
    if path.exists() or path.is_symlink():
        raise InputError(
            f"{path}: already exists; a new key would change every pseudonym. Keep the old key, "
            "or move it away first if you really mean to start again"
        )
    make_dirs(path.parent, private=True)  # missing folders 0700; an existing one (e.g. ~/.config) is left as it is
    key = secrets.token_bytes(KEY_BYTES)
    write_key_file(path, key)
    return (
        f"wrote a new key to {path} (mode 0600, fingerprint {key_fingerprint(key)}). Back it up somewhere "
        "safe: the same key gives the same pseudonyms in every export; never commit or share it."
    )
