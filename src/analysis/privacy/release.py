"""Release after release: every peer release is checked against the clinic's earlier ones (a private ledger).

An attacker who holds two releases can subtract them: from release A (75 clients in an arm, baseline mean
5.746667) and B (76, 5.736842) one client's score is 76 x 5.736842 - 75 x 5.746667 = 5.0. The policy:

* **Differencing (refuse).** A release is refused when any client count in it (a group's clients, the
  analysed, those with an endpoint or a responder count, in the report or the bundle) differs from the same
  count of any earlier release by 1..min_cell-1: the clients in that difference would be isolated. The
  reason is one line; the release can go out once at least ``min_cell`` more clients are in (or with the
  same data as before).
* **Coarsening.** Arm summaries are rounded to 1 decimal (:mod:`analysis.privacy.summaries`), so even a
  difference of ``min_cell`` clients gives their mean only to within +-0.05 x (n_A + n_B) / min_cell points.

The ledger is a folder outside every repository, one per clinic: params ``report.release_ledger``, else the
environment variable ``HIPKNEE_RELEASE_LEDGER``, else ``~/.config/hip-knee-outcomes/releases``. It is made
owner-only (folders 0700, files 0600 from the first byte) and holds, per release, what was released: the
month, each client count (true value and as shown) and its digest. No client-level record is kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from analysis.errors import OutputError
from analysis.privacy.audit import Count, Relation

LEDGER_ENV = "HIPKNEE_RELEASE_LEDGER"
LEDGER_SCHEMA = 1
ARM_LABELS = {"hip_focused": "hip-focused", "comparator": "knee-focused"}


# ----------------------------------------------------------------------------- what a release shares


def bundle_counts(bundle: Mapping[str, Any], true: Mapping[str, int]) -> dict[str, tuple[int, str]]:
    """The client counts of a findings bundle: ``{"findings.json:<path>": (true value, shown text)}``.

    ``true`` holds the true values under the same ``<path>`` names (e.g. ``arms.comparator.n``); a count
    the bundle does not show (None) is left out.
    """
    out = {}
    for path, value in sorted(true.items()):
        node: Any = bundle
        for part in path.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None:
            out[f"findings.json:{path}"] = (int(value), str(node))
    return out


def bundle_true_counts(
    primary_arms: Mapping[str, Mapping[str, Any]],
    n_by_group: Mapping[str, int],
    n_clients: int,
    responders: Mapping[str, Any] | None,
) -> dict[str, int]:
    """The true values of every client count a bundle shows, named by their path in the bundle."""
    out = {"primary.n_clients": int(n_clients)}
    out.update({f"n_clients_by_group.{g}": int(n) for g, n in n_by_group.items()})
    for arm, a in primary_arms.items():
        out[f"arms.{arm}.n"] = int(a["n"])
        out[f"arms.{arm}.n_endpoint"] = int(a["n_endpoint"])
    if responders and responders.get("status") == "done":
        for arm in ARM_LABELS:
            for key in (f"n_{arm}", f"responders_{arm}"):
                if responders.get(key) is not None:
                    out[f"responders.{key}"] = int(responders[key])
    return out


def release_relations(names: Sequence[str], values: Mapping[str, int]) -> list[Relation]:
    """What a peer knows about how the release's counts relate (names as in :func:`bundle_counts` and
    :func:`analysis.report.peer.shared_counts`); relations naming an absent count are dropped later."""
    f, r = "findings.json:", "report:"
    rel = [
        Relation(tuple(f"{f}n_clients_by_group.{g}" for g in ARM_LABELS.values()), (f"{f}primary.n_clients",)),
        Relation((f"{r}primary.n",), (f"{f}primary.n_clients",)),
        Relation(tuple(f"{r}table1.n.{g}" for g in ARM_LABELS.values()), (f"{r}table1.n.all",)),
        Relation(tuple(f"{r}flow.group.{g}" for g in ARM_LABELS.values()), (f"{r}flow.last",)),
        Relation((f"{r}flow.last",), (f"{r}table1.n.all",)),
        Relation((f"{f}primary.n_clients",), (f"{r}table1.n.all",), "le"),
    ]
    for arm, label in ARM_LABELS.items():
        n, ne = f"{f}arms.{arm}.n", f"{f}arms.{arm}.n_endpoint"
        rn, rr = f"{f}responders.n_{arm}", f"{f}responders.responders_{arm}"
        rel += [
            Relation((n,), (f"{f}n_clients_by_group.{label}",)),
            Relation((f"{r}flow.group.{label}",), (f"{r}table1.n.{label}",)),
            Relation((n,), (f"{r}table1.n.{label}",), "le"),
            Relation((ne,), (n,), "le"),
            Relation((rn,), (ne,), "eq" if values.get(rn) == values.get(ne) else "le"),
            Relation((rr,), (rn,), "le"),
        ]
    present = set(names)
    return [x for x in rel if {*x.left, *x.right} <= present]


# ----------------------------------------------------------------------------- differencing against the ledger


def differencing(counts: Sequence[Count], earlier: Sequence[Mapping[str, Any]], min_cell: int) -> list[str]:
    """One line per earlier release from which this one differs by 1..min_cell-1 clients in some count."""
    reasons = []
    for entry in earlier:
        before = entry.get("counts", {})
        if before == {c.name: c.value for c in counts}:
            continue  # the same data released again
        for c in counts:
            d = abs(c.value - int(before.get(c.name, c.value)))
            if 0 < d < min_cell:
                reasons.append(
                    f"{c.name.split(':', 1)[1]} differs from the release of {entry.get('month', '?')} by {d} "
                    f"client(s) (fewer than {min_cell}), so subtracting the two would isolate them; release "
                    f"when at least {min_cell} more clients are in, or with the same data"
                )
                break
    return reasons


def entry_for(counts: Sequence[Count], month: str) -> dict[str, Any]:
    """The ledger entry of a release: month, counts (true) and as shown, and its digest."""
    body = {
        "schema": LEDGER_SCHEMA,
        "month": month,
        "counts": {c.name: c.value for c in counts},
        "shown": {c.name: c.shown for c in counts},
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return {**body, "digest": digest}


# ----------------------------------------------------------------------------- the ledger on disk (I/O edge)


def ledger_dir(configured: str | None, clinic_id: str) -> Path:
    """The clinic's ledger folder (not created): params, else the environment variable, else ~/.config."""
    from analysis.paths import check_outside_repositories

    base = configured or os.environ.get(LEDGER_ENV) or str(Path.home() / ".config" / "hip-knee-outcomes" / "releases")
    folder = check_outside_repositories(
        Path(base),
        "the release ledger (what this clinic has shared)",
        "choose a private folder outside any repository, e.g. ~/clinic-private/releases",
    )
    return folder / clinic_id


def read_ledger(folder: Path) -> list[dict[str, Any]]:
    """Every earlier release recorded in ``folder``, oldest month first; none if the folder is absent."""
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.glob("release-*.json")):
        try:
            out.append(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise OutputError(f"{p}: release ledger entry unreadable ({exc}); restore it from a backup") from None
    return sorted(out, key=lambda e: (str(e.get("month", "")), str(e.get("digest", ""))))


def record_release(folder: Path, entry: Mapping[str, Any]) -> Path:
    """Write ``entry`` into the ledger (folders 0700, the file 0600 from its first byte); idempotent."""
    for part in (folder.parent, folder):
        part.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = folder / f"release-{entry['month']}-{str(entry['digest'])[:16]}.json"
    if path.is_file():
        return path
    fd, tmp = tempfile.mkstemp(prefix=".release.", suffix=".tmp", dir=folder)  # mkstemp: 0600 from the start
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(dict(entry), fh, sort_keys=True, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
