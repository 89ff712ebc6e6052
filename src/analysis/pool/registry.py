"""The network's registry of known clinics, and the check of each bundle's signature against it.

The network lead keeps ``clinics.yaml`` (passed to ``outcomes pool --registry``)::

    clinics:
      clinic-a:                      # the clinic's report.clinic_id
        public_key: ed25519 M3Bx...  # the line of the clinic's signing.key.pub
        label: Clinic A              # optional: the name the pooled report shows

A bundle is pooled only when ``<bundle>.sig`` is a valid signature of its exact bytes by a registered key,
the bundle's clinic id is the one that key is registered to, and no other bundle is signed by the same key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from analysis import signing
from analysis.errors import InputError

CLINIC_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
LABEL = re.compile(r"^[A-Za-z0-9 _.,()&'/-]{1,60}$")
MAX_REGISTRY_BYTES = 1_000_000


@dataclass(frozen=True)
class Clinic:
    """A registered clinic: its id, its raw public key and the label the pooled report shows."""

    clinic_id: str
    public: bytes
    label: str

    @property
    def fingerprint(self) -> str:
        return signing.fingerprint(self.public)


def parse_registry(doc: Any, where: str) -> dict[bytes, Clinic]:
    """The registry's clinics by public key; InputError (one line per problem) when it is malformed."""
    entries = doc.get("clinics") if isinstance(doc, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise InputError(f"{where}: not a clinic registry (expected `clinics:` mapping clinic id -> public_key)")
    problems: list[str] = []
    by_key: dict[bytes, Clinic] = {}
    for cid, entry in entries.items():
        if not (isinstance(cid, str) and CLINIC_ID.match(cid)):
            problems.append(f"{where}: clinic id {str(cid)[:40]!r} is not 1-32 letters, digits, _ or -")
            continue
        entry = entry if isinstance(entry, dict) else {}
        public = signing.parse_public(str(entry.get("public_key") or ""))
        label = entry.get("label", cid)
        if public is None:
            problems.append(f"{where}: clinics.{cid}.public_key is not an Ed25519 public key (`ed25519 <base64>`)")
        elif not (isinstance(label, str) and LABEL.match(label)):
            problems.append(f"{where}: clinics.{cid}.label must be 1-60 letters, digits, spaces or .,()&'/-_")
        elif public in by_key:
            problems.append(f"{where}: clinics.{cid} has the same public key as clinics.{by_key[public].clinic_id}")
        else:
            by_key[public] = Clinic(cid, public, label)
    if problems:
        raise InputError("\n".join(problems))
    return by_key


def load_registry(path: Path) -> dict[bytes, Clinic]:
    """Read and check ``clinics.yaml``."""
    try:
        if path.stat().st_size > MAX_REGISTRY_BYTES:
            raise InputError(f"{path}: larger than 1 MB; a clinic registry is a few lines per clinic")
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: registry not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        raise InputError(f"{path}: cannot read the registry as YAML ({exc.__class__.__name__})") from None
    return parse_registry(doc, str(path))


def signer(path: Path, data: bytes, sig_text: str | None, registry: dict[bytes, Clinic]) -> tuple[Clinic | None, str]:
    """The registered clinic whose key signed ``data`` (the bytes of ``path``), or why the bundle is refused."""
    sig_path = f"{path}{signing.SIG_SUFFIX}"
    if sig_text is None:
        return None, (
            f"{path}: not signed (no {sig_path}); the clinic sets ${signing.SIGNING_KEY_ENV} and reruns "
            "`outcomes report`, then sends both files"
        )
    parsed = signing.parse_signature(sig_text)
    if parsed is None:
        return None, f"{path}: {sig_path} is not a signature written by `outcomes report`"
    public, sig = parsed
    clinic = registry.get(public)
    if clinic is None:
        return None, (
            f"{path}: signed by an unknown key ({signing.fingerprint(public)}), not in the registry; only "
            "clinics the network lead registered are pooled"
        )
    if not signing.verify(public, sig, data):
        return None, (
            f"{path}: the signature does not match the content: the bundle was changed after clinic "
            f"{clinic.clinic_id!r} signed it (or damaged); ask the clinic for the original"
        )
    return clinic, ""


def read_signature(path: Path) -> str | None:
    """The text of ``<path>.sig``, or None when there is none (a too large or binary one reads as garbage)."""
    sig_path = Path(f"{path}{signing.SIG_SUFFIX}")
    if not sig_path.is_file():
        return None
    with open(sig_path, "rb") as fh:
        return fh.read(signing.MAX_SIG_BYTES).decode("ascii", errors="replace")
