"""Keyed pseudonyms and date offsets: HMAC-SHA256 of a normalised identity under the secret key.

Pure functions of (key, purpose, text): without the key the ids cannot be linked back; with it they are
reproduced exactly, export after export. Reading and creating the key is the edge (:mod:`.keys`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def _b32(digest: bytes, n: int) -> str:
    return base64.b32encode(digest).decode("ascii").rstrip("=")[:n]


def _hmac(key: bytes, purpose: str, text: str) -> bytes:
    # The purpose prefix keeps client ids, session ids, therapist ids and date offsets independent.
    return hmac.new(key, f"{purpose}\x1f{text}".encode(), hashlib.sha256).digest()


def pseudonym(key: bytes, purpose: str, text: str, prefix: str, n_chars: int) -> str:
    """A keyed pseudonym: ``prefix`` + base32 of HMAC-SHA256, ``n_chars`` characters (fits the id charset)."""
    return prefix + _b32(_hmac(key, purpose, text), n_chars)


def key_fingerprint(key: bytes) -> str:
    """A short, one-way tag of the key, so two logs show whether the same key was used."""
    return _b32(_hmac(key, "fingerprint", ""), 8)


def date_offset(key: bytes, identity: str, max_days: int) -> int:
    """The client's keyed date shift in days, uniform in -max_days..-1 and 1..max_days: never 0.

    A shift of 0 would keep a client's real dates. ``max_days`` must be at least 1.
    """
    if max_days < 1:
        raise ValueError("date_shift_max_days must be at least 1 (a shift of 0 keeps the real dates)")
    raw = int(int.from_bytes(_hmac(key, "date-shift", identity)[:8], "big") % (2 * max_days))
    return raw - max_days if raw < max_days else raw - max_days + 1
