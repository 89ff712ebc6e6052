"""Output checking of a peer release, as SACRO/ACRO does it: one line per rule, and the release-wide audits.

The peer report and the findings bundle leave the clinic together, so they are checked together:

* **threshold**: no client count in 1..min_cell-1 is shown (the gate, :mod:`analysis.privacy.gate`);
* **consistency**: no hidden count can be worked out from any other count of the release
  (:func:`analysis.privacy.audit.coarsen` hides more until :func:`~analysis.privacy.audit.derivable` finds none);
* **summaries**: arm means, SDs, medians and IQRs of the 0-10 score cannot be inverted
  (:mod:`analysis.privacy.summaries`);
* **dominance**: no arm's baseline total is dominated by one or two clients (N-k and p% rules);
* **residual df**: the primary model has at least 10 residual degrees of freedom (clients minus fixed
  effects);
* **differencing**: against every earlier release in the ledger (:mod:`analysis.privacy.release`);
* **free text**: no name from the input folder's file system, and in the bundle no string the report did
  not generate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.groups import group_label
from analysis.privacy import audit, release
from analysis.privacy.summaries import summaries_shown
from analysis.report import peer as pr
from analysis.report.secondary_text import peer_text
from analysis.store import to_json_text

# strings a bundle may hold that are not in the results or params: generated shapes
_GENERATED = re.compile(
    r"^(?:[0-9a-f]{64}|\d{4}-\d{2}|<\d+|\*|v[\w.+-]+|[\d.]+(?:[a-z]+\d*)?(?:[+.][\w.]+)?|not installed|)$"
)


def baseline_scores(inp: Any, c: Any) -> dict[str, list[float]]:
    """Each arm's first-session scores of the primary measure among the clients the model analysed."""
    t = inp.tables.get("analysed_clients")
    if t is None or t.empty:
        return {}
    d = inp.dataset
    first = d[(d["measure"] == c.measure.key) & (d["timing"] == c.model.timing) & (d["session_number"] == 1)]
    first = first.drop_duplicates("client_id").set_index("client_id")["value"]
    out: dict[str, list[float]] = {}
    for arm, ids in t.groupby("group", sort=True)["client_id"]:
        out[str(arm)] = [float(v) for v in first.reindex(ids.astype(str)).dropna()]
    return out


def baseline_shown(scores: Mapping[str, Sequence[float]]) -> dict[str, bool]:
    """Per arm: may its baseline mean, SD, median and IQR be shown (:func:`summaries_shown`)."""
    return {arm: summaries_shown(list(v)) for arm, v in scores.items()}


def release_counts(
    bundle: Mapping[str, Any],
    results: Any,
    n_by_group: Mapping[str, int],
    clients_by_group: pd.Series,
    flow: pd.DataFrame,
    min_cell: int,
) -> tuple[list[audit.Count], list[audit.Relation]]:
    """Every client count the release shares (bundle and report), coarsened until none is derivable."""
    primary = results.primary
    responders = results.secondary.get("responders")
    true = release.bundle_true_counts(
        {k: v.model_dump() for k, v in primary.arms.items()},
        n_by_group,
        int(primary.n_clients or 0),
        None if responders is None else responders.model_dump(),
    )
    values = dict(release.bundle_counts(bundle, true))
    values.update(pr.shared_counts(clients_by_group, flow, int(primary.n_clients or 0), min_cell))
    counts = audit.shown_counts(values)
    relations = release.release_relations([c.name for c in counts], {c.name: c.value for c in counts})
    return audit.coarsen(counts, relations, min_cell), relations


def table1_counts(clients: pd.DataFrame) -> dict[str, int]:
    """Table 1's true cell counts, ``"<variable>=<level>|<group>"``, for the ledger (aggregates only)."""
    out = {}
    for var in [v for v in ("sex", "age_band", "activity", "knee") if v in clients.columns]:
        tab = clients.groupby([var, "group"], observed=True, sort=True).size()
        for key, n in tab.items():
            level, group = key if isinstance(key, tuple) else (key, "")
            out[f"{var}={level}|{group}"] = int(n)
    return out


def table1_differences(table1: Mapping[str, int], earlier: Sequence[Mapping[str, Any]], min_cell: int) -> int:
    """Cells of Table 1 that differ by 1..min_cell-1 from the latest earlier release (0 with none)."""
    if not earlier:
        return 0
    before = earlier[-1].get("table1", {})
    keys = set(table1) | set(before)
    return sum(1 for k in keys if 0 < abs(table1.get(k, 0) - int(before.get(k, 0))) < min_cell)


def foreign_names(input_dir: Path) -> set[str]:
    """Names from the input folder's file system that no peer output may contain: every file and folder
    name (and stem) that is not a contract table's, at least 4 characters long."""
    keep = {"clients", "sessions", "measurements", "deidentify_log"}
    out: set[str] = set()
    if not input_dir.is_dir():
        return out
    for p in input_dir.rglob("*"):
        for name in (p.name, p.name.split(".", 1)[0]):
            if len(name) >= 4 and name.lower() not in keep and name.split(".", 1)[0].lower() not in keep:
                out.add(name)
    return out


def allowed_strings(*sources: Any) -> set[str]:
    """Every string in ``sources`` (results, params, packages...), and each as shown to peers."""
    out: set[str] = set()

    def walk(x: Any) -> None:
        if isinstance(x, Mapping):
            for k, v in x.items():
                walk(k)
                walk(v)
        elif isinstance(x, (list, tuple, set)):
            for v in x:
                walk(v)
        elif isinstance(x, str):
            out.update({x, peer_text(x), x.replace("_", " ")})
        elif x is not None and not isinstance(x, (int, float, bool)):
            walk(x.model_dump() if hasattr(x, "model_dump") else str(x))

    for s in sources:
        walk(s)
    return out


def free_strings(bundle: Any, allowed: set[str], path: str = "$") -> list[str]:
    """Places in the bundle holding a string the report did not generate (not in ``allowed``, not a hash,
    month, version or suppressed count)."""
    out = []
    if isinstance(bundle, Mapping):
        for k, v in bundle.items():
            out += free_strings(v, allowed, f"{path}.{k}")
    elif isinstance(bundle, list):
        for i, v in enumerate(bundle):
            out += free_strings(v, allowed, f"{path}[{i}]")
    elif isinstance(bundle, str) and bundle not in allowed and not _GENERATED.match(bundle):
        out.append(path)
    return out


def contains_foreign(text: str, names: Iterable[str]) -> int:
    """How many of ``names`` occur in ``text`` (case-insensitive)."""
    low = text.lower()
    return sum(1 for n in names if n.lower() in low)


def disclosure_lines(
    *,
    counts: Sequence[audit.Count],
    relations: Sequence[audit.Relation],
    results: Any,
    scores: Mapping[str, Sequence[float]],
    earlier: Sequence[Mapping[str, Any]],
    min_cell: int,
    table1: Mapping[str, int] | None = None,
) -> tuple[list[str], list[str]]:
    """The ACRO-style summary (one line per rule) and the reasons to refuse the release (empty: release)."""
    refuse: list[str] = []
    small = [c for c in counts if not c.hidden and 0 < c.value < min_cell]
    hidden = sum(c.hidden for c in counts)
    lines = [
        f"threshold ({min_cell}): {'FAIL' if small else 'pass'} - {len(counts)} shared client counts, {hidden} hidden"
    ]
    refuse += [f"{c.name} shows {c.value}, below {min_cell}" for c in small]
    pinned = audit.derivable(counts, relations, min_cell)
    lines.append(
        f"consistency (LP over {len(relations)} relations): {'FAIL' if pinned else 'pass'} - "
        f"{len(pinned)} hidden count(s) derivable"
    )
    refuse += [f"{n} can be worked out from the other counts of the release" for n in pinned]
    shown = {group_label(a): summaries_shown(list(v)) for a, v in scores.items()}
    lines.append(
        "summaries (0-10 scores not pinned): pass - "
        + ", ".join(f"{a} {'shown (1 decimal)' if ok else 'withheld'}" for a, ok in sorted(shown.items()))
    )
    dom = {group_label(a): audit.dominance(v) for a, v in scores.items() if shown.get(group_label(a))}
    broken = {a: r for a, r in dom.items() if r}
    lines.append(
        f"dominance (N-k 2/90%, p-ratio 10%): {'FAIL' if broken else 'pass'}"
        + "".join(f" - {a}: {'; '.join(r)}" for a, r in broken.items())
    )
    refuse += [f"{a} baseline total is dominated: {'; '.join(r)}" for a, r in broken.items()]
    p = results.primary
    # as ACRO reads statsmodels' df_resid: observations minus fixed-effect parameters
    dof = audit.residual_dof(p.n_observations, len(p.fixed_effects or {})) if p.ok else None
    if dof is None:
        lines.append("residual df: pass - no model estimate is shared")
    else:
        ok = dof >= audit.SAFE_DOF
        lines.append(
            f"residual df (>= {audit.SAFE_DOF}): {'pass' if ok else 'FAIL'} - primary model {dof} "
            f"({p.n_observations} observations, {len(p.fixed_effects or {})} fixed effects; "
            f"{p.df_method} df {p.df or float('nan'):.1f})"
        )
        if not ok:
            refuse.append(f"the primary model has {dof} residual df, fewer than {audit.SAFE_DOF}")
    diff = release.differencing(counts, earlier, min_cell)
    small_cells = table1_differences(table1 or {}, earlier, min_cell)
    lines.append(
        f"differencing (against {len(earlier)} earlier release(s)): {'REFUSED' if diff else 'pass'}"
        + (f" - {diff[0]}" if diff else "")
        + (
            f"; note: {small_cells} Table 1 cell(s) changed by 1..{min_cell - 1} since the last release "
            f"(marginals of a group of at least {min_cell} new clients)"
            if small_cells and not diff
            else ""
        )
    )
    refuse += diff
    return lines, refuse


def release_checks(
    outputs: Mapping[str, Any],
    texts: Sequence[str],
    earlier: Sequence[Mapping[str, Any]],
    foreign: Iterable[str],
    allowed: set[str] | None,
    min_cell: int,
) -> tuple[list[str], list[str]]:
    """Every release check over built outputs (``texts``: the peer HTML and figures as text): the summary
    lines and the reasons to refuse (see :func:`disclosure_lines`; plus free text)."""
    lines: list[str] = []
    refuse: list[str] = []
    if "release_counts" in outputs:
        lines, refuse = disclosure_lines(
            counts=outputs["release_counts"],
            relations=outputs["release_relations"],
            results=outputs["results"],
            scores=outputs["baseline_scores"],
            earlier=earlier,
            min_cell=min_cell,
            table1=outputs.get("table1_counts"),
        )
    zeros = sum(len(re.findall(r'data-count="0"', t)) for t in texts) + sum(c.shown == "0" for c in counts_of(outputs))
    lines.append(
        f"zeros: {zeros} count(s) shown as 0 (ACRO flags zeros for review as possible class disclosure; "
        "an empty cell names nobody, so they are shown)"
    )
    names = sorted(set(foreign))
    n_foreign = sum(contains_foreign(t, names) for t in [*texts, to_json_text(outputs["findings"])])
    free = [] if allowed is None else free_strings(outputs["findings"], allowed)
    lines.append(
        f"free text: {'FAIL' if n_foreign or free else 'pass'} - {n_foreign} file-system name(s) in peer outputs, "
        f"{len(free)} bundle string(s) not generated by the report"
    )
    if n_foreign:
        refuse.append(f"{n_foreign} name(s) of files in the input folder appear in peer outputs")
    if free:
        refuse.append(f"findings.json holds strings the report did not generate at {', '.join(free[:3])}")
    return lines, refuse


def counts_of(outputs: Mapping[str, Any]) -> list[audit.Count]:
    """The release's client counts, if the outputs carry them."""
    return list(outputs.get("release_counts", []))


def ledger_entry(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """What the ledger keeps of a written release: its counts, dated by the bundle's last month."""
    entry = release.entry_for(outputs["release_counts"], str(outputs["findings"]["period"]["to"]))
    return {**entry, "table1": dict(outputs.get("table1_counts", {}))}
