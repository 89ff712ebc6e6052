"""Report: determinism, self-containment, the privacy gate, honest wording, findings schema.

Builds small projects with the real pipeline (simulated clinic, real validate, join and model; see
tests/fixtures/real_project.py) and runs the real report step on the model's own results: a clinic whose
primary fit is accepted and a tiny one whose primary fit fails.
"""

from __future__ import annotations

import json
import math
import re
import sys
from html import unescape
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from analysis.contract import load_registry
from analysis.errors import PrivacyError
from analysis.params import load_params, with_updates
from analysis.privacy import check_peer_output
from analysis.report import (
    docx_export,
    findings,
    model_tables,
    paper,
    peer,
    provenance,
    publish,
    secondary_text,
    summary,
    therapist,
)
from analysis.results import read_results
from conftest import results_from
from fixtures.real_project import CLINIC, TINY, copy_project, modelled_project

MAIN = Path(__file__).resolve().parents[1]
PARAMS = load_params(MAIN / "params.yaml")


def _primary(values: dict):
    """A typed primary result: the demo's, with ``values`` in place of its own."""
    return results_from({"primary": values}).primary


@pytest.fixture(scope="session")
def modelled(tmp_path_factory):
    """Build a clinic's project with the real model once per session: ``modelled(CLINIC)`` -> its folder."""
    base = tmp_path_factory.mktemp("modelled")
    return lambda clinic: modelled_project(base, **clinic)


def _build(root: Path, monkeypatch, source: Path, **report) -> tuple:
    params = copy_project(source, root)
    if report:
        params = with_updates(params, {"report": report})
    monkeypatch.setenv("OUTCOMES_ROOT", str(root))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return params, publish.run_report(params)


@pytest.fixture(scope="module")
def built(tmp_path_factory, modelled):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("report_a")
        params, summary_text = _build(root, mp, modelled(CLINIC))
    return root, params, summary_text


@pytest.fixture(scope="module")
def built_failed(tmp_path_factory, modelled):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("report_failed")
        params, summary_text = _build(root, mp, modelled(TINY))
    return root, params, summary_text


def test_every_status_the_model_emits_is_rendered(built, built_failed):
    seen_primary, seen_secondary = set(), set()
    for root, _, _ in (built, built_failed):
        results = read_results(root / "reports/results/results.json")
        seen_primary.add(results.primary.status)
        html = unescape((root / "reports/therapist/index.html").read_text(encoding="utf-8"))
        peer_html = unescape((root / "reports/peer/report.html").read_text(encoding="utf-8"))
        for key, entry in results.secondary.items():
            seen_secondary.add(entry.status)
            label = secondary_text.SECONDARY_LABELS.get(key, key)
            assert entry.label in html or label in html, key
            if entry.status != "done":
                # the secondary table names the status, with the reason where there is one
                assert entry.status in html, (key, entry.status)
            assert entry.status in peer_html or "withheld" in peer_html, (key, entry.status)
    # "fallback" (random intercept only) is rendered in test_fallback_fit_is_reported_as_such
    assert seen_primary == {"ok", "failed"}
    assert seen_secondary == {"done", "not_estimable", "failed"}


def _outputs(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in (root / "reports" / "therapist").rglob("*") if p.is_file())
    files += sorted(p for p in (root / "reports" / "peer").rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


def test_build_writes_every_output(built):
    root, _, text = built
    out = _outputs(root)
    for name in (
        "reports/therapist/index.html",
        "reports/peer/report.html",
        "reports/peer/report.pdf",
        "reports/peer/report.docx",
        "reports/peer/findings.json",
        "reports/peer/figures/forest.svg",
    ):
        assert name in out, name
    assert out["reports/peer/report.pdf"].startswith(b"%PDF")
    assert "reports built in" in text


def test_two_builds_are_byte_identical(built, tmp_path, monkeypatch, modelled):
    root_a = built[0]
    root_b = tmp_path / "report_b"
    root_b.mkdir()
    _build(root_b, monkeypatch, modelled(CLINIC))  # a fresh copy of the modelled project, built again
    a, b = _outputs(root_a), _outputs(root_b)
    assert sorted(a) == sorted(b)
    assert any(k.endswith(".svg") for k in a) and any(k.endswith(".pdf") for k in a)
    different = [k for k in a if a[k] != b[k]]
    assert different == []


def test_html_is_self_contained(built):
    root = built[0]
    for page in ("reports/therapist/index.html", "reports/peer/report.html"):
        html = (root / page).read_text(encoding="utf-8")
        assert not re.search(r"""<script[^>]*\bsrc\s*=""", html, re.I), page
        assert not re.search(r"""<link[^>]*\bhref\s*=\s*["']?(https?:)?//""", html, re.I), page
        assert not re.search(r"""\b(src|href)\s*=\s*["']?(https?:)?//""", html, re.I), page
        assert not re.search(r"""url\(\s*["']?(https?:)?//""", html, re.I), page
        assert '<img src="data:image/svg+xml;base64,' in html


def test_therapist_links_validation_and_lists_clients(built):
    root = built[0]
    html = (root / "reports/therapist/index.html").read_text(encoding="utf-8")
    assert 'href="../validation/validation.html"' in html
    assert "<details>" in html and "Model checks" in html
    ids = pd.read_parquet(root / "data/processed/analysis.parquet")["client_id"].unique()
    assert any(f">{cid}<" in html for cid in ids)  # the therapist's report does show clients


def test_peer_outputs_have_no_ids_and_no_small_counts(built):
    root, params, _ = built
    dataset = pd.read_parquet(root / "data/processed/analysis.parquet")
    forbidden = set(dataset["client_id"]) | set(dataset["session_id"])
    min_cell = params.report.min_cell
    html = (root / "reports/peer/report.html").read_text(encoding="utf-8")
    no_images = re.sub(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+", "data:", html)
    assert check_peer_output(no_images, forbidden_ids=forbidden, min_cell=min_cell) == []
    bundle = json.loads((root / "reports/peer/findings.json").read_text(encoding="utf-8"))
    assert check_peer_output(bundle, forbidden_ids=forbidden, min_cell=min_cell) == []
    # every count shown is marked, and none is in 1..min_cell-1
    counts = re.findall(r'data-count="([^"]*)"', no_images)
    assert counts
    for c in counts:
        assert c.startswith(("&lt;", "<")) or c in ("0", "*") or int(c) >= min_cell, c
    # free text that quotes counts (reasons, notes) is not shown to peers: every reason with a digit the
    # therapist sees is replaced for peers
    therapist_html = (root / "reports/therapist/index.html").read_text(encoding="utf-8")
    results = read_results(root / "reports/results/results.json")
    quoted = [e.reason for e in results.secondary.values() if e.reason and re.search(r"\d", e.reason)]
    for reason in quoted:
        assert reason not in html
    assert all(r.split(";")[0][:40] in therapist_html.replace("&#39;", "'") for r in quoted[:1])
    # nothing per client: no small multiples, no not-improving table
    assert "Each client" not in html and "not improving" not in html.lower()


def test_findings_follow_the_schema(built):
    jsonschema = pytest.importorskip("jsonschema")
    root = built[0]
    bundle = json.loads((root / "reports/peer/findings.json").read_text(encoding="utf-8"))
    jsonschema.validate(bundle, findings.schema())
    assert bundle["schema_version"] == findings.SCHEMA_VERSION
    assert re.fullmatch(r"\d{4}-\d{2}", bundle["period"]["from"])
    results = read_results(root / "reports/results/results.json")
    assert bundle["primary"]["estimate"] == pytest.approx(results.primary.estimate, rel=1e-12)
    assert set(bundle["secondary"]) >= {"gee", "iptw", "multiple_imputation"}
    assert bundle["primary"]["df"] == pytest.approx(results.primary.df, rel=1e-12)
    assert bundle["primary"]["df_method"] == "satterthwaite"
    assert bundle["compatibility"]["measure"] == "knee_pain_nprs" and len(bundle["compatibility"]["sha256"]) == 64
    assert bundle["integrity"]["sha256"] == findings.integrity_hash(bundle)
    assert bundle["clinic_id"] == "KTESTCLINIC01"  # from HIPKNEE_CLINIC_ID (tests/conftest.py)


def test_failed_primary_says_so_and_shows_no_estimate(built_failed):
    root = built_failed[0]
    results = read_results(root / "reports/results/results.json")
    assert results.primary.status == "failed" and results.primary.reason
    html = (root / "reports/therapist/index.html").read_text(encoding="utf-8")
    assert "could not be estimated reliably" in html
    assert results.primary.reason.replace("'", "&#39;") in html
    assert "Estimate −" not in html
    bundle = json.loads((root / "reports/peer/findings.json").read_text(encoding="utf-8"))
    assert bundle["primary"]["estimate"] is None and bundle["primary"]["status"] == "failed"
    # no model, no expected-recovery band: the model step wrote an empty table and the page says why
    assert pd.read_csv(root / "reports/results/expected.csv").empty
    assert "No expected-recovery band: the primary model could not be fitted" in html
    assert 'class="expected-band"' not in html and "behind expected recovery: 0" in html


def test_privacy_gate_refusal_writes_nothing(tmp_path, monkeypatch, modelled):
    params = copy_project(modelled(CLINIC), tmp_path)
    dataset = pd.read_parquet(tmp_path / "data/processed/analysis.parquet")
    params = with_updates(params, {"report": {"clinic_label": f"Clinic of {dataset['client_id'].iloc[0]}"}})  # leak
    monkeypatch.setenv("OUTCOMES_ROOT", str(tmp_path))
    with pytest.raises(PrivacyError, match="not written"):
        publish.run_report(params)
    assert not (tmp_path / "reports/peer").exists()


# ----------------------------------------------------------------------------- pure parts


@pytest.fixture(scope="module")
def nprs():
    return load_registry(MAIN / "config/measures.yaml")["knee_pain_nprs"]


@pytest.mark.parametrize(
    ("est", "lo", "hi", "expected"),
    [
        (-0.9, -1.5, -0.3, "improved by 0.9 more NPRS points by week 6"),
        (0.8, 0.2, 1.4, "improved by 0.8 NPRS points less by week 6"),
        (-0.4, -1.1, 0.3, "no clear difference"),
        (0.4, -0.3, 1.1, "no clear difference"),
    ],
)
def test_primary_sentence_follows_sign_and_ci(nprs, est, lo, hi, expected):
    text = summary.primary_sentence(_primary({"status": "ok", "estimate": est, "ci_low": lo, "ci_high": hi}), nprs, 6)
    assert expected in text
    assert "95% CI" in text


def test_primary_sentence_when_fit_failed(nprs):
    text = summary.primary_sentence(
        _primary({"status": "failed", "estimate": None, "reason": "did not converge"}), nprs, 6
    )
    assert "could not be estimated" in text and "did not converge" in text
    assert not re.search(r"\d\.\d", text)


def test_peer_flow_merges_small_exclusions():
    flow = pd.DataFrame(
        {
            "step": [
                "received",
                "valid",
                "with baseline",
                "with follow-up",
                "in comparison",
                "analysed: hip",
                "analysed: knee",
            ],
            "clients": [100, 98, 97, 80, 77, 40, 37],
            "excluded_clients": [0, 2, 1, 17, 3, 0, 0],
            "reason": ["", "invalid", "no baseline", "no follow-up", "other focus", "group", "group"],
        }
    )
    steps, groups = peer.peer_flow(flow, 5)
    shown = [(b.step, b.clients, b.excluded) for b in steps]
    assert shown == [
        ("received", "100", "0"),
        ("with follow-up", "80", "20"),
        ("in comparison", "77", "3"),
    ] or shown == [("received", "100", "0"), ("in comparison", "77", "23")]
    for b in steps:
        assert not (b.excluded.isdigit() and 0 < int(b.excluded) < 5)
    assert [g.clients for g in groups] == ["40", "37"]


def test_peer_flow_hides_group_recoverable_by_subtraction():
    flow = pd.DataFrame(
        {
            "step": ["received", "analysed: hip", "analysed: knee"],
            "clients": [30, 3, 27],
            "excluded_clients": [0, 0, 0],
            "reason": ["", "group", "group"],
        }
    )
    _, groups = peer.peer_flow(flow, 5)
    assert groups[0].clients == "<5" and groups[1].clients in ("<5", "*")


def test_mcid_needed_takes_the_easier_of_points_and_percent(nprs):
    assert therapist.mcid_needed(nprs, 10) == 2
    assert therapist.mcid_needed(nprs, 3) == pytest.approx(0.9)


def test_forest_rows_keep_failed_analyses_visible():
    rows = summary.forest_rows(
        results_from(
            {
                "primary": {"status": "failed", "reason": "x", "estimate": None},
                "secondary": {"gee": {"status": "done", "estimate": -1, "ci_low": -2, "ci_high": 0}},
            }
        )
    )
    assert rows["label"].iloc[0].startswith("Primary") and math.isnan(rows["estimate"].iloc[0])
    assert rows.loc[rows["label"].str.startswith("GEE"), "estimate"].item() == -1
    assert len(rows) == 1 + len(summary.SENSITIVITY)


def test_code_version_comes_from_the_code_not_git(tmp_path):
    v = provenance.code_version(tmp_path)
    assert re.fullmatch(r"v[0-9.]+\+src\.[0-9a-f]{12}", v) and v == provenance.code_version()
    assert provenance.source_hash().startswith(v.rsplit(".", 1)[1])


def test_params_hash_ignores_key_order():
    assert provenance.params_hash({"a": 1, "b": {"c": 2}}) == provenance.params_hash({"b": {"c": 2}, "a": 1})


def test_fallback_fit_is_reported_as_such():
    from analysis.contract import Measure

    pain = Measure("knee_pain_nprs", "Knee pain", "points", 0, 10, True, "lower_is_better", 2, 30)
    primary = {"status": "fallback", "estimate": -1.0, "ci_low": -1.8, "ci_high": -0.2, "reason": "boundary"}
    text = summary.primary_sentence(_primary(primary), pain, 6)
    assert "improved by 1.0 more" in text and "random intercept only" in text
    failed = summary.primary_sentence(_primary({"status": "failed", "reason": "did not converge"}), pain, 6)
    assert "could not be estimated" in failed and "did not converge" in failed and "−" not in failed


def test_findings_hide_the_other_group_when_one_is_small():
    jsonschema = pytest.importorskip("jsonschema")
    results = {
        "primary": {
            "status": "ok",
            "estimate": -1.0,
            "se": 0.5,
            "ci_low": -2.0,
            "ci_high": 0.0,
            "p_value": 0.05,
            "n_clients": 23,
            "n_observations": 120,
            "converged": True,
        },
        "secondary": {},
    }
    bundle = findings.build_findings(
        results_from(results),
        clinic_id="KTESTCLINIC01",
        period=("2024-01", "2024-06"),
        n_by_group={"hip-focused": 19, "knee-focused": 4},
        params=PARAMS,
        params_sha256="0" * 64,
        packages={"pandas": "x"},
        code_version="v0",
        min_cell=5,
    )
    # 23 - 19 would give the suppressed 4 away: both groups are hidden
    assert bundle["n_clients_by_group"] == {"hip-focused": "*", "knee-focused": "<5"}
    jsonschema.validate(bundle, findings.schema())


def test_peer_medians_withheld_for_small_groups():
    from analysis.report import peer

    clients = pd.DataFrame(
        {
            "group": ["hip-focused"] * 2 + ["knee-focused"] * 6,
            "symptom_weeks": [3, 900, 10, 12, 14, 16, 18, 20],
            "sitting_hours": [1.0, 2.0, 5, 6, 7, 8, 9, 10],
        }
    )
    summary = peer.continuous_summary(clients, 5).set_index(["variable", "group"])
    assert math.isnan(summary.loc[("symptom_weeks", "hip-focused"), "median"])  # two clients: no quartiles
    assert summary.loc[("symptom_weeks", "knee-focused"), "median"] == 15


def _bundle(primary_extra: dict | None = None, responders: dict | None = None, params: dict | None = None) -> dict:
    results = {
        "primary": {
            "status": "ok",
            "estimate": -1.0,
            "se": 0.5,
            "df": 40.2,
            "df_method": "satterthwaite",
            "ci_low": -2.0,
            "ci_high": 0.0,
            "p_value": 0.05,
            "n_clients": 40,
            "n_observations": 200,
            "converged": True,
            **(primary_extra or {}),
        },
        "secondary": {"responders": responders} if responders else {},
    }
    return findings.build_findings(
        results_from(results),
        clinic_id="KTESTCLINIC01",
        period=("2024-01", "2024-06"),
        n_by_group={"hip-focused": 22, "knee-focused": 18},
        params=with_updates(PARAMS, params or {"model": {"measure": "knee_pain_nprs", "primary_week": 6}}),
        params_sha256="0" * 64,
        packages={"pandas": "x"},
        code_version="v0",
        min_cell=5,
        mcid={"points": 2.0, "percent": 30.0},
    )


def test_findings_v2_arms_withheld_below_min_cell():
    jsonschema = pytest.importorskip("jsonschema")
    arms = {
        "hip_focused": {
            "n": 22,
            "baseline_mean": 6.1,
            "baseline_sd": 1.5,
            "n_endpoint": 4,
            "change_mean": -2.5,
            "change_sd": 1.1,
        },
        "comparator": {
            "n": 18,
            "baseline_mean": 5.8,
            "baseline_sd": 1.7,
            "n_endpoint": 12,
            "change_mean": -1.5,
            "change_sd": 1.6,
        },
    }
    b = _bundle({"arms": arms})
    jsonschema.validate(b, findings.schema())
    assert b["arms"]["hip_focused"]["baseline_mean"] == pytest.approx(6.1)
    assert b["arms"]["hip_focused"]["n_endpoint"] == "<5"
    assert b["arms"]["hip_focused"]["change_mean"] is None and b["arms"]["hip_focused"]["change_sd"] is None
    assert b["arms"]["comparator"]["change_mean"] == pytest.approx(-1.5)


def test_findings_v2_responder_ratio_withheld_when_a_cell_is_small():
    jsonschema = pytest.importorskip("jsonschema")
    base = {
        "status": "done",
        "definition": "2 points or 30%",
        "n_hip_focused": 20,
        "n_comparator": 18,
        "log_odds_ratio": {"estimate": 0.4, "se": 0.6, "method": "Woolf (unadjusted)"},
    }
    ok = _bundle(responders={**base, "responders_hip_focused": 12, "responders_comparator": 7})
    assert ok["responders"]["status"] == "done" and ok["responders"]["log_odds_ratio"] == pytest.approx(0.4)
    assert ok["responders"]["mcid"] == {"points": 2.0, "percent": 30.0}
    # 17 of 20 respond: only 3 did not -> the ratio would give the small cell back
    small = _bundle(responders={**base, "responders_hip_focused": 17, "responders_comparator": 7})
    assert small["responders"]["status"] == "withheld"
    assert small["responders"]["log_odds_ratio"] is None and small["responders"]["log_odds_ratio_se"] is None
    for b in (ok, small):
        jsonschema.validate(b, findings.schema())


def test_findings_v2_compatibility_key_changes_with_the_estimand():
    a = _bundle(params={"model": {"measure": "knee_pain_nprs", "primary_week": 6}})
    b = _bundle(params={"model": {"measure": "knee_pain_nprs", "primary_week": 8}})
    c = _bundle(params={"model": {"measure": "lefs", "primary_week": 6}})
    assert a["compatibility"]["sha256"] != b["compatibility"]["sha256"] != c["compatibility"]["sha256"]
    assert a["compatibility"]["sha256"] == _bundle()["compatibility"]["sha256"]


def test_clinic_identity_is_stable_unique_and_never_shared(tmp_path, monkeypatch):
    monkeypatch.delenv(findings.CLINIC_ID_ENV, raising=False)
    store = tmp_path / "cfg" / "clinic_id"
    first = findings.clinic_identity(PARAMS, store)
    assert re.fullmatch(r"K[A-Z2-7]{12}", first) and store.read_text().strip() == first
    assert findings.clinic_identity(PARAMS, store) == first  # stable
    other = findings.clinic_identity(PARAMS, tmp_path / "other" / "clinic_id")
    assert other != first  # another machine, another id
    named = with_updates(PARAMS, {"report": {"clinic_id": "north-clinic"}})
    assert findings.clinic_identity(named, store) == "north-clinic"


def _sens_results(primary_ci=(-1.66, -0.2), iptw=(-0.49, -1.61, 0.64), mi=(-0.52, -1.28, 0.24), balanced=False):
    r = {
        "primary": {"status": "ok", "estimate": -0.9, "ci_low": primary_ci[0], "ci_high": primary_ci[1]},
        "secondary": {
            "gee": {"status": "done", "estimate": -0.84, "ci_low": -1.55, "ci_high": -0.14},
            "iptw": {
                "status": "done",
                "estimate": iptw[0],
                "ci_low": iptw[1],
                "ci_high": iptw[2],
                "balanced": balanced,
                "max_abs_smd_weighted": 0.24,
                "smd_target": 0.1,
            },
            "multiple_imputation": {"status": "done", "estimate": mi[0], "ci_low": mi[1], "ci_high": mi[2]},
            "tipping_point": {"status": "done", "tipping_delta": None, "conclusion": "no conclusion to tip"},
        },
    }
    return results_from(r)


def test_robustness_sentence_never_lets_the_headline_sound_surer():
    r = _sens_results()
    text = summary.robustness_sentence(r, summary.forest_rows(r))
    # the unbalanced IPTW analysis is inconclusive: counted neither for nor against (issue 20)
    assert text.startswith("1 of 2 sensitivity analyses includes no difference (Multiple imputation")
    assert "dropout" in text and "read the headline as uncertain" in text
    assert "IPTW) analysis is inconclusive and not counted" in text and "did not balance the groups" in text
    assert "0.24" in text
    rows = summary.forest_rows(r)
    assert rows.loc[rows["label"].str.startswith("IPTW"), "status"].item() == summary.INCONCLUSIVE
    agree = _sens_results(iptw=(-0.8, -1.5, -0.1), mi=(-0.85, -1.5, -0.2), balanced=True)
    assert summary.robustness_sentence(agree, summary.forest_rows(agree)).startswith(
        "All 3 sensitivity analyses point the same way"
    )


def test_tipping_point_status_agrees_in_plot_and_table():
    r = _sens_results()
    rows = summary.forest_rows(r)
    table = {s["key"]: s for s in secondary_text.secondary_rows(r)}
    assert rows.loc[rows["label"].str.startswith("Tipping"), "status"].item() == summary.NO_TIPPING
    assert table["tipping_point"]["status"] == summary.NO_TIPPING


def test_chronicity_is_answered_in_words():
    r = {
        "secondary": {
            "chronicity": {
                "status": "done",
                "interaction": {
                    "estimate": -0.014,
                    "ci_low": -0.12,
                    "ci_high": 0.09,
                    "p_value": 0.79,
                    "change_at_primary_week_per_log_unit": -0.08,
                },
                "at_symptom_weeks": {"4": {"estimate": -0.8}, "26": {"estimate": -0.9}, "104": {"estimate": -1.0}},
            }
        }
    }
    text = summary.chronicity_sentence(results_from(r))
    assert text.startswith("No clear dependence on how long the pain had lasted")
    assert "−0.8 at 4 weeks" in text and "−1.0 at 104 weeks" in text
    r["secondary"]["chronicity"]["interaction"].update(
        ci_low=0.02, ci_high=0.2, p_value=0.01, change_at_primary_week_per_log_unit=0.3
    )
    assert "smaller the longer the pain had lasted" in summary.chronicity_sentence(results_from(r))


def test_trajectory_band_is_clipped_to_the_scale_and_thin_data_marked():
    from analysis.report import figures as fg

    traj = pd.DataFrame(
        {
            "group": ["hip_focused"] * 3,
            "week": [0.0, 6.0, 12.0],
            "mean": [5.5, 2.0, 0.2],
            "ci_low": [5.0, 1.0, -1.2],
            "ci_high": [6.0, 3.0, 1.6],
        }
    )
    fig = fg.trajectories(traj, None, ylabel="NPRS", ylim=(0, 10), thin_from=10.0)
    ax = fig.axes[0]
    assert ax.get_ylim() == (0.0, 10.0)
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() >= 0.0  # never below 0 on a 0-10 scale
    assert any(line.get_linestyle() == "--" for line in ax.get_lines())


def test_model_tables_in_words_with_df():
    primary = {
        "reference_levels": {"sex": "F"},
        "fixed_effects": {
            "C(sex)[T.M]": {
                "estimate": -0.3,
                "se": 0.3,
                "df": 116.1,
                "ci_low": -0.9,
                "ci_high": 0.3,
                "p_value": 0.3,
                "df_method": "satterthwaite",
            },
            "Intercept": {
                "estimate": 4.6,
                "se": 0.7,
                "df": 116.2,
                "ci_low": 3.2,
                "ci_high": 6.0,
                "p_value": 1e-6,
                "df_method": "satterthwaite",
            },
            "week:hip": {
                "estimate": -0.16,
                "se": 0.06,
                "df": 110.3,
                "ci_low": -0.28,
                "ci_high": -0.03,
                "p_value": 0.01,
                "df_method": "satterthwaite",
            },
        },
        "random_effects": {
            "variances": {"Intercept": 2.2, "week": 0.09},
            "covariance": {"cov(Intercept, week)": -0.09},
            "correlation": {"corr(Intercept, week)": -0.2},
            "residual_variance": 0.8,
        },
    }
    fixed, var = model_tables.model_tables(_primary(primary))
    assert [f["term"] for f in fixed] == ["intercept", "week × hip-focused", "sex M (vs F)"]
    assert fixed[1]["df"] == 110.3
    assert var[0]["component"] == "between clients: intercept" and var[0]["sd"] == pytest.approx(2.2**0.5)
    assert var[-1]["component"] == "within client (residual)"


def test_peer_report_reads_like_a_short_paper(built):
    root = built[0]
    html = (root / "reports/peer/report.html").read_text(encoding="utf-8")
    for s in paper.SECTIONS.values():  # every heading of the paper, once, with its anchor
        assert html.count(f'id="{s.id}">{s.title}</h{s.level}>') == 1, s.title
    for row in paper.strobe_rows():  # the STROBE checklist links to headings that are there
        for label, sid in row["where"]:
            assert f'<a href="#{sid}">{label}</a>' in html and f'id="{sid}"' in html
    assert "knee_pain_nprs (pre)" not in html  # the estimand in words, not column names
    outcome = html.split('id="outcome">Outcome, follow-up and measurement</h3>')[1][:400]
    assert ") (" not in re.sub(r"<[^>]+>", "", outcome)  # no doubled units
    for part in ("Background.", "Methods.", "Results.", "Conclusions."):
        assert f"<strong>{part}</strong>" in html
    assert "Ethics approval and consent" in html and "To be completed by the clinic" in html
    # the Word copy says what the HTML says, abstract first
    text = docx_export.docx_text((root / "reports/peer/report.docx").read_bytes())
    assert "Abstract" in text and "Background. Knee pain is usually treated at the knee" in text
    assert "Appendix A. STROBE checklist" in text
    assert "p = &lt;0.001" not in html and "p = <0.001" not in html
    pdf = (root / "reports/peer/report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-1.7")  # tagged (structure tree) PDF, as WeasyPrint writes with pdf_tags
    assert "Knee pain at the first session" in html  # baseline pain per group in Table 1


def test_table1_describes_the_flow_s_clients_even_when_the_fit_failed(built_failed):
    root = built_failed[0]
    html = (root / "reports/peer/report.html").read_text(encoding="utf-8")
    flow = pd.read_csv(root / "data/processed/flow.csv")
    in_comparison = int(flow.loc[flow["step"].str.contains("comparison", case=False), "clients"].iloc[0])
    header = re.search(r"All<br><span class=\"n\">n = <span data-count=\"([^\"]+)\"", html).group(1)
    assert header in (str(in_comparison), "<5", "&lt;5")


def test_balance_rows_show_no_level_for_a_numeric_covariate(tmp_path):
    from types import SimpleNamespace

    from analysis.model.sensitivity import balance_table
    from analysis.report.context import balance_rows

    df = pd.DataFrame(
        {"hip": [1, 1, 0, 0], "sitting_hours": [8.0, 6.0, 4.0, 2.0], "sex": pd.Categorical(["F", "M", "F", "M"])}
    )
    table = balance_table(df, ["sitting_hours", "sex"], pd.Series([1.0, 1.0, 1.0, 1.0]))
    table.to_csv(tmp_path / "balance.csv", index=False)  # as the model stage writes it
    rows = balance_rows(SimpleNamespace(tables={"balance": pd.read_csv(tmp_path / "balance.csv")}))
    levels = {(r["covariate"], r["level"]) for r in rows}
    assert levels == {("sitting_hours", ""), ("sex", "F"), ("sex", "M")}


def test_findings_hash_is_over_the_published_numbers():
    # floats are published at store.SIGNIFICANT_DIGITS; the integrity hash must be over what is written,
    # else every written bundle would fail its own check when pooled
    from analysis.store import to_json_text

    b = _bundle({"estimate": -0.9339887265338188, "se": 0.37123456789})
    again = json.loads(to_json_text(b))
    assert again == b and findings.integrity_hash(again) == b["integrity"]["sha256"]
    assert again["primary"]["estimate"] == -0.933989


def test_peer_methods_state_the_registry_mdc(built):
    # the registry has an MDC for NPRS (2 points): the methods and limitations must not say it has none
    html = (built[0] / "reports/peer/report.html").read_text(encoding="utf-8")
    assert "Minimal detectable change (a single client&#39;s change beyond measurement error): 2 points" in html or (
        "Minimal detectable change (a single client's change beyond measurement error): 2 points" in html
    )
    assert "No minimal detectable change is recorded" not in html and "has no minimal detectable change" not in html
