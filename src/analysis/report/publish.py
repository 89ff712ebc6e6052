"""Publish the reports: the privacy gate over every peer output, the release checks against the clinic's
ledger, and the atomic writes -- the I/O edge of ``outcomes report`` (:func:`run_report`).

:mod:`analysis.report.build` makes every output in memory; this module decides whether the peer ones may
leave the clinic (:func:`check_peer`, :mod:`analysis.report.disclosure`, :mod:`analysis.privacy.release`)
and only then writes (:func:`write_outputs`). If the gate refuses, no peer file is written and the reason
is given.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from analysis import signing
from analysis.errors import PrivacyError
from analysis.params_schema import Params
from analysis.paths import check_outputs_outside_inputs, project_root, resolve
from analysis.privacy import assert_peer_safe
from analysis.privacy import release as rl
from analysis.report import disclosure as dc
from analysis.report import docx_export as dx
from analysis.report import findings as fnd
from analysis.report import provenance as prov
from analysis.report.build import build_outputs
from analysis.report.inputs import load_report_inputs
from analysis.store import private_dir, to_json_text, write_bytes, write_csv, write_text

_DATA_URI = re.compile(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+")


def check_peer(
    outputs: dict[str, Any],
    dataset: pd.DataFrame,
    min_cell: int,
    *,
    earlier: Sequence[Mapping[str, Any]] = (),
    foreign: Iterable[str] = (),
    allowed: set[str] | None = None,
) -> list[str]:
    """The privacy gate over every peer output, as one release; raises PrivacyError (nothing is written then).

    Embedded images are checked as their own text (SVG) rather than as base64, where a
    random run of letters could look like an id. ``earlier`` are the clinic's earlier releases (the
    ledger), ``foreign`` the names in the input folder's file system no output may contain, ``allowed``
    every string the bundle may hold (None: not checked). Returns the disclosure-check summary, one line
    per rule.
    """
    forbidden = set()
    for col in ("client_id", "session_id"):
        if col in dataset.columns:
            forbidden |= {str(v) for v in dataset[col].dropna().unique()}
    html = _DATA_URI.sub("data:", outputs["peer_html"])
    assert_peer_safe(html, forbidden_ids=forbidden, min_cell=min_cell, label="reports/peer/report.html")
    assert_peer_safe(
        outputs["findings"], forbidden_ids=forbidden, min_cell=min_cell, label="reports/peer/findings.json"
    )
    assert_peer_safe(
        dx.docx_text(outputs["peer_docx"]), forbidden_ids=forbidden, min_cell=min_cell, label="reports/peer/report.docx"
    )
    for name, svg in outputs["peer_figures"].items():
        assert_peer_safe(
            svg.decode("utf-8"), forbidden_ids=forbidden, min_cell=min_cell, label=f"reports/peer/figures/{name}"
        )
    lines, refuse = dc.release_checks(
        outputs,
        [html, *(v.decode("utf-8") for v in outputs["peer_figures"].values())],
        earlier,
        foreign,
        allowed,
        min_cell,
    )
    if refuse:
        raise PrivacyError(
            "peer release refused: " + refuse[0] + (f" (and {len(refuse) - 1} more)" if refuse[1:] else "")
        )
    return lines


def write_outputs(
    outputs: dict[str, Any], therapist_dir: Path, peer_dir: Path, signing_key: Ed25519PrivateKey | None = None
) -> list[Path]:
    """Write every output atomically; stale peer figures are removed so the folder matches this build.

    With ``signing_key``, ``findings.json.sig`` (:mod:`analysis.signing`) signs the bytes of findings.json;
    without, an old signature is removed (it would not match the new bundle).
    """
    written = []
    write_text(therapist_dir / "index.html", outputs["therapist_html"])
    written.append(therapist_dir / "index.html")
    for name in ("clients", "worklist"):
        write_csv(therapist_dir / f"{name}.csv", outputs[f"{name}_csv"])
        written.append(therapist_dir / f"{name}.csv")
    fig_dir = peer_dir / "figures"
    keep = set(outputs["peer_figures"])
    if fig_dir.is_dir():
        for old in sorted(fig_dir.glob("*.svg")):
            if old.name not in keep:
                old.unlink()
    for name, data in sorted(outputs["peer_figures"].items()):
        write_bytes(fig_dir / name, data)
        written.append(fig_dir / name)
    write_text(peer_dir / "report.html", outputs["peer_html"])
    write_bytes(peer_dir / "report.pdf", outputs["peer_pdf"])
    findings = to_json_text(outputs["findings"])
    sig_path = peer_dir / ("findings.json" + signing.SIG_SUFFIX)
    sig_path.unlink(missing_ok=True)  # never leave a signature of an older bundle beside the new one
    write_bytes(peer_dir / "report.docx", outputs["peer_docx"])
    write_text(peer_dir / "findings.json", findings)
    written += [peer_dir / "report.html", peer_dir / "report.pdf", peer_dir / "report.docx", peer_dir / "findings.json"]
    if signing_key is not None:
        write_text(sig_path, signing.signature_text(signing_key, findings.encode("utf-8")))
        written.append(sig_path)
    return written


def keep_history(clients_csv: pd.DataFrame, folder: Path) -> Path:
    """This build's clients.csv, kept outside the DVC outputs (owner-only) for the next build's "new" marks."""
    path = private_dir(folder) / "clients.csv"
    write_csv(path, clients_csv, private=True)
    return path


def run_report(params: Params, progress: Callable[[str], None] | None = None) -> str:
    """I/O edge: read the pipeline outputs, build all reports, gate the peer ones, write.

    ``progress`` (optional) is called with the name of each step before it runs.
    Returns a summary of what was written and how long it took.
    """
    say = progress or (lambda step: None)
    t0 = time.perf_counter()
    root = project_root()
    check_outputs_outside_inputs(params, "report", root=root)
    r = params.report
    key_path = signing.signing_key_path(r.signing_key)
    key = signing.load_signing_key(key_path) if key_path else None  # a bad key fails before any work
    say("reading the results and the analysis dataset (checking their lineage)")
    inp, read = load_report_inputs(params, root)
    provenance = prov.collect(params, root, read)
    say(f"building the therapist's report, the peer report and its PDF ({inp.dataset['client_id'].nunique()} clients)")
    outputs = build_outputs(inp, provenance)
    say("privacy gate over every peer output, as one release checked against the clinic's earlier ones")
    ledger = rl.ledger_dir(r.release_ledger, inp.clinic_id)
    allowed = dc.allowed_strings(
        inp.results,
        prov.analysis_params(params),
        provenance.packages,
        provenance.code_version,
        inp.clinic_id,
        fnd.GENERATED_STRINGS,
        {"min_cell": r.min_cell},
    )
    checks = check_peer(
        outputs,
        inp.dataset,
        r.min_cell,
        earlier=rl.read_ledger(ledger),
        foreign=dc.foreign_names(resolve(params.data.input, root)),
        allowed=allowed,
    )
    therapist_dir, peer_dir = resolve(r.therapist_dir, root), resolve(r.peer_dir, root)
    say("writing")
    written = write_outputs(outputs, therapist_dir, peer_dir, key)
    rl.record_release(ledger, dc.ledger_entry(outputs))
    table = outputs["clients_csv"]
    if r.history_dir is not None and isinstance(table, pd.DataFrame):
        written.append(keep_history(table, resolve(r.history_dir, root)))
    took = time.perf_counter() - t0
    lines = [f"wrote {p}" for p in written]
    lines.append("disclosure check of the peer release (SACRO/ACRO rules):")
    lines += [f"  {x}" for x in checks]
    if key is None:
        lines.append(
            f"findings.json is NOT signed (fine for local use; a network pool refuses it): set "
            f"${signing.SIGNING_KEY_ENV} or params report.signing_key to your signing key, {signing.KEYGEN_HINT}"
        )
    else:
        lines.append(f"findings.json signed with key {signing.fingerprint(signing.raw_public(key))}")
    lines.append(f"reports built in {took:.1f} s")
    return "\n".join(lines)
