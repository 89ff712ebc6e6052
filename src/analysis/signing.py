"""Ed25519 signatures for findings bundles: a clinic's signing key, the detached signature, the check.

A clinic makes its key once (``outcomes signing-key --out ~/.config/outcomes/signing.key``): the private
key (PKCS#8 PEM, mode 0600 from its first byte, outside every repository) and beside it ``<key>.pub``, the
public key the clinic sends to the network lead. ``outcomes report`` then signs the exact bytes of
``findings.json`` and writes the detached signature ``findings.json.sig``::

    outcomes-signature 1
    key ed25519 <base64 of the 32-byte public key>
    sig <base64 of the 64-byte Ed25519 signature of findings.json's bytes>

A valid signature proves that the bundle came unchanged from the holder of that key. It does not prove
that the numbers are right, that the key holder is honest, or that the key was not stolen.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from analysis.errors import InputError
from analysis.paths import check_outside_repositories, check_owner_only
from analysis.store import make_dirs

SIGNING_KEY_ENV = "OUTCOMES_SIGNING_KEY"
SIG_SUFFIX = ".sig"
SIG_HEADER = "outcomes-signature 1"
KEYGEN_HINT = "make one with `outcomes signing-key --out ~/.config/outcomes/signing.key`"
MAX_SIG_BYTES = 1024


def fingerprint(public: bytes) -> str:
    """A short, readable fingerprint of a raw public key: ``SHA256:`` + 16 hex digits in groups of 4."""
    h = hashlib.sha256(public).hexdigest()[:16]
    return "SHA256:" + ":".join(h[i : i + 4] for i in range(0, 16, 4))


def public_text(public: bytes) -> str:
    """The public key as one line of text: ``ed25519 <base64>``."""
    return "ed25519 " + base64.b64encode(public).decode("ascii")


def parse_public(text: str) -> bytes | None:
    """The raw 32-byte public key of ``ed25519 <base64>`` (or the bare base64 / 64 hex digits), else None."""
    t = text.strip()
    if t.startswith("ed25519 "):
        t = t[len("ed25519 ") :].strip()
    raw: bytes | None = None
    if len(t) == 64 and all(c in "0123456789abcdefABCDEF" for c in t):
        raw = bytes.fromhex(t)
    else:
        try:
            raw = base64.b64decode(t, validate=True)
        except (binascii.Error, ValueError):
            return None
    return raw if len(raw) == 32 else None


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def signature_text(key: Ed25519PrivateKey, data: bytes) -> str:
    """The detached signature file's text for ``data`` (pure: Ed25519 signatures are deterministic)."""
    sig = base64.b64encode(key.sign(data)).decode("ascii")
    return f"{SIG_HEADER}\nkey {public_text(raw_public(key))}\nsig {sig}\n"


def parse_signature(text: str) -> tuple[bytes, bytes] | None:
    """``(public key, signature)`` of a signature file's text, or None when it is not one."""
    lines = text.strip().splitlines()
    if len(lines) != 3 or lines[0].strip() != SIG_HEADER or not lines[1].startswith("key "):
        return None
    public = parse_public(lines[1][4:])
    if public is None or not lines[2].startswith("sig "):
        return None
    try:
        sig = base64.b64decode(lines[2][4:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return (public, sig) if len(sig) == 64 else None


def verify(public: bytes, sig: bytes, data: bytes) -> bool:
    """True when ``sig`` is ``public``'s Ed25519 signature of exactly ``data``."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(sig, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def _outside(path: Path) -> Path:
    return check_outside_repositories(
        path, "a signing key", "keep it outside every repository, e.g. ~/.config/outcomes/signing.key"
    )


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write ``key`` (PKCS#8 PEM) to a new file, mode 0600 from its first byte; never overwrite one."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # O_EXCL: never overwrite, even if the file appeared since the check; 0600 from the first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)


def run_signing_keygen(path: Path) -> str:
    """Create a clinic's Ed25519 signing key at ``path`` (0600, folder 0700) and its public key ``path.pub``."""
    path = _outside(path)
    pub_path = path.with_name(path.name + ".pub")
    for p in (path, pub_path):
        if p.exists() or p.is_symlink():
            raise InputError(
                f"{p}: already exists; a new signing key would have to be registered again with the network "
                "lead. Keep the old one, or move it away first if you really mean to start again"
            )
    make_dirs(path.parent, private=True)  # missing folders 0700; an existing one (e.g. ~/.config) is left as it is
    key = Ed25519PrivateKey.generate()
    write_private_key(path, key)
    public = raw_public(key)
    fp = fingerprint(public)
    pub_path.write_text(f"# clinic signing key, fingerprint {fp}\n{public_text(public)}\n", encoding="ascii")
    return (
        f"wrote a new signing key to {path} (mode 0600; never share or commit it) and its public key to "
        f"{pub_path} (fingerprint {fp}).\nSend {pub_path.name} to the network lead, who adds to clinics.yaml:\n"
        f"  <your clinic_id>:\n    public_key: {public_text(public)}\n"
        f"Sign bundles with: export {SIGNING_KEY_ENV}={path} (or params report.signing_key), then `outcomes report`"
    )


def signing_key_path(configured: str | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The signing key file: params ``report.signing_key``, else $OUTCOMES_SIGNING_KEY, else None (unsigned)."""
    env = os.environ if environ is None else environ
    text = configured or env.get(SIGNING_KEY_ENV)
    return Path(text).expanduser() if text else None


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The private key in ``path`` (outside every repository), or one line saying why not."""
    path = _outside(path)
    try:
        check_owner_only(path, "the signing key")
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: signing key not found; {KEYGEN_HINT}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the signing key ({exc.__class__.__name__})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise InputError(f"{path}: not an unencrypted Ed25519 signing key (PEM); {KEYGEN_HINT}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{path}: not an Ed25519 key; {KEYGEN_HINT}")
    return key
