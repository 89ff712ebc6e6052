"""A one-page progress sheet per client, to discuss with the client (therapist-only; HTML and PDF).

``outcomes sheet CLIENT_ID...`` writes ``<report.sheets_dir>/<id>.html`` and ``.pdf`` (default
``reports/sheets/``: git-ignored and outside the DVC outputs, so ``dvc repro`` keeps them; owner-only)
from the analysis dataset, with the session count and visits of the same client table as the therapist
page's finder (:func:`analysis.report.worklist.client_table`): pain over time with the band of a
clinically important improvement and the expected-recovery band of the primary model
(:mod:`analysis.report.recovery`; none when the model could not be fitted), function (LEFS) where
recorded, hip internal rotation (left and right), and every session with its focus, techniques and
minutes. Outcome systems such as FOTO give clinicians such a sheet; clients like to see their own progress.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from analysis.contract import Registry, load_registry
from analysis.errors import InputError
from analysis.params_schema import Params
from analysis.paths import resolve
from analysis.report import recovery as rc
from analysis.report.render import GROUP_COLOURS, data_uri, figure_style, html_to_pdf, render, svg_bytes
from analysis.report.therapist import assign_group, at_timing
from analysis.report.worklist import client_table
from analysis.store import private_dir, write_bytes, write_text


def _series(d: pd.DataFrame, measure: str, timing: str = "pre") -> pd.DataFrame:
    x = at_timing(d[(d["measure"] == measure) & d["value"].notna()], timing)
    return x.sort_values("session_number", kind="mergesort")[["weeks_since_first", "value"]]


#: one small chart: (title, data, y-limits, MCID band or None, y label)
Panel = tuple[str, pd.DataFrame, tuple[float, float], tuple[float, float] | None, str]


def _chart(panels: list[Panel], colour: str, expected: pd.DataFrame | None = None) -> bytes:
    """One row of small charts: (title, data, y-limits, band or None, y label); ``expected`` (week,
    expected, low, high) is drawn on the first panel as the expected-recovery band."""
    with figure_style():
        fig = Figure(figsize=(3.0 * len(panels), 1.9))
        for i, (title, data, ylim, band, ylabel) in enumerate(panels, start=1):
            ax = fig.add_subplot(1, len(panels), i)
            if band:
                ax.axhspan(*sorted(band), color="#e6e6e6", lw=0, label="clinically important improvement")
            if i == 1 and expected is not None and not expected.empty:
                lo, hi = ylim
                ax.fill_between(
                    expected["week"],
                    expected["low"].clip(lo, hi),
                    expected["high"].clip(lo, hi),
                    color=colour,
                    alpha=0.16,
                    lw=0,
                )
                ax.plot(expected["week"], expected["expected"].clip(lo, hi), color=colour, lw=1, ls="--", alpha=0.8)
            if not data.empty:
                ax.plot(data["weeks_since_first"], data["value"], color=colour, marker="o", ms=3, lw=1.5)
            else:
                ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center", color="#777777")
            ax.set_ylim(*ylim)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("weeks since the first session", fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
        fig.tight_layout()
        return svg_bytes(fig)


def client_sheet(
    dataset: pd.DataFrame,
    registry: Registry,
    client_id: str,
    group: str,
    clinic_label: str,
    pain: str = "knee_pain_nprs",
    timing: str = "pre",
    n_sessions: int | None = None,
    reference: str = "",
    expected: pd.DataFrame | None = None,
    band_level: float = 0.8,
) -> str:
    """The sheet's HTML (self-contained). Raises InputError for an unknown client id.

    ``pain`` and ``timing`` are the primary measure and its timing (params ``model.measure``/``timing``);
    ``n_sessions`` the client table's session count (checked against the sessions listed); ``reference`` the
    practice's own patient reference (key holder's real-date view only); ``expected`` this client's rows of
    the expected-recovery band (:func:`analysis.report.recovery.band_table`) at ``band_level``, or None.
    """
    d = dataset[dataset["client_id"] == client_id]
    if d.empty:
        raise InputError(f"{client_id!r}: no such client in the analysis dataset (ids as in the therapist's report)")
    colour = GROUP_COLOURS.get(group, "#555555")
    m = registry[pain]
    p = _series(d, pain, timing)
    band = None
    if not p.empty:
        base = float(p["value"].iloc[0])
        band = (base, float(m.mcid_target(base)))
    panels: list[Panel] = [(m.label, p, (m.minimum, m.maximum), band, m.unit)]
    if "lefs" in registry:
        lefs = registry["lefs"]
        panels.append((lefs.label, _series(d, "lefs"), (lefs.minimum, lefs.maximum), None, "higher is better"))
    ir_panels: list[Panel] = []
    for key in ("hip_ir_left_deg", "hip_ir_right_deg"):
        if key in registry:
            r = registry[key]
            ir_panels.append((r.label, _series(d, key), (0, 60), None, r.unit))
    sessions = d.drop_duplicates("session_id").sort_values("session_number", kind="mergesort")[
        ["session_number", "session_date", "focus", "techniques", "minutes", "therapist_id"]
    ]
    pre_post = d[d["measure"] == pain].pivot_table(
        index="session_number", columns="timing", values="value", aggfunc="first"
    )
    by_session = pre_post.to_dict("index")  # session number -> {"pre": value, "post": value}
    rows = []
    for s in sessions.to_dict("records"):
        pp = by_session.get(s["session_number"], {})
        rows.append(
            dict(
                n=int(s["session_number"]),
                date=pd.Timestamp(s["session_date"]).date().isoformat(),
                focus=str(s["focus"]),
                techniques="—"
                if pd.isna(s["techniques"]) or not str(s["techniques"])
                else str(s["techniques"]).replace(";", ", "),
                minutes=s["minutes"],
                therapist=str(s["therapist_id"] or ""),
                pre=pp.get("pre"),
                post=pp.get("post"),
            )
        )
    if n_sessions is not None and n_sessions != len(rows):
        raise InputError(f"{client_id}: the sheet lists {len(rows)} sessions, the client table {n_sessions}")
    first, last = rows[0]["date"], rows[-1]["date"]
    return render(
        "sheet.html.j2",
        dict(
            client_id=client_id,
            reference=reference,
            group=group,
            clinic_label=clinic_label,
            first=first,
            last=last,
            n_sessions=len(rows),
            pain_uri=data_uri(_chart(panels, colour, expected)),
            band_level=band_level if expected is not None and not expected.empty else None,
            ir_uri=data_uri(_chart(ir_panels, colour)) if ir_panels else None,
            sessions=rows,
            measure=m,
            baseline=None if p.empty else float(p["value"].iloc[0]),
            latest=None if p.empty else float(p["value"].iloc[-1]),
            stamp=f"{last}T00:00:00Z",
            title=f"Progress sheet {client_id}",
        ),
    )


def write_sheets(
    dataset: pd.DataFrame,
    registry: Registry,
    params: Params,
    client_ids: list[str],
    out: Path,
    references: dict[str, str] | None = None,
    expected: pd.DataFrame | None = None,
) -> list[Path]:
    """Write one HTML + PDF per client into ``out`` (made owner-only), from the finder's client table;
    ``expected`` is the model step's ``expected.csv`` (None: no expected-recovery band)."""

    model = params.model
    level = params.report.attention.expected_band
    band = rc.band_table(expected, level)
    bands = rc.by_client(band)
    group = assign_group(dataset, tuple(model.exposure.hip_focused), tuple(model.exposure.comparator))
    table = client_table(dataset, registry[model.measure], model.timing, group, params.report.attention, band=band)
    counts = dict(zip(table["client_id"], table["sessions"], strict=True))
    unknown = [cid for cid in client_ids if not (dataset["client_id"] == cid).any()]
    if unknown:
        raise InputError(
            f"{', '.join(map(repr, unknown))}: no such client in the analysis dataset "
            "(ids as in the therapist's report)"
        )
    private_dir(out)
    written = []
    for cid in client_ids:
        g = str(group[dataset["client_id"] == cid].iloc[0])
        html = client_sheet(
            dataset,
            registry,
            cid,
            g,
            params.report.clinic_label,
            pain=model.measure,
            timing=model.timing,
            n_sessions=counts.get(cid),
            reference=(references or {}).get(cid, ""),
            expected=bands.get(cid),
            band_level=level,
        )
        write_text(out / f"{cid}.html", html, private=True)  # a person's record: owner-only from the first byte
        write_bytes(out / f"{cid}.pdf", html_to_pdf(html), private=True)
        written.append(out / f"{cid}.pdf")
    return written


def run_sheet(params: Params, client_ids: list[str]) -> str:
    """I/O edge of ``outcomes sheet``: read the analysis dataset, write one HTML + PDF per client."""

    path = resolve(params.join.out)
    if not path.is_file():
        raise InputError(f"{path}: analysis dataset not found; run `outcomes join` first (or `dvc repro`)")
    dataset = pd.read_parquet(path)
    registry = load_registry(resolve(params.data.registry))
    expected_path = resolve(params.model.out_dir) / "expected.csv"
    expected = pd.read_csv(expected_path) if expected_path.is_file() else None
    written = write_sheets(dataset, registry, params, client_ids, resolve(params.report.sheets_dir), expected=expected)
    return "\n".join(f"wrote {p} (and .html)" for p in written)
