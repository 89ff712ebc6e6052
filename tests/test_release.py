"""Release after release (issue 19): the attacks an outsider holding every peer release can run, before and after.

(a) differencing two releases (the demo without its newest client, then the full demo), end to end;
(b) working a suppressed count out of the other numbers of one release (a 12-client clinic, 1 vs 8 analysed);
(c) inverting an arm's mean, SD, median and IQR to its 0-10 scores (exhaustive enumeration, n = 5..8);
(d) a referral letter's file name in the input folder reaching the peer report's provenance.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from analysis.errors import PrivacyError
from analysis.join import build_analysis_dataset, exclusion_flow, flow_config, run_join
from analysis.model.endpoint import arm_summaries
from analysis.model.prepare import primary_data
from analysis.model.run import run_model
from analysis.params import load_params, with_updates
from analysis.privacy import audit, release, summaries
from analysis.report import disclosure, findings
from analysis.report.publish import run_report
from analysis.simulate.model import simulate_clinic
from analysis.validate import run_validate
from analysis.validate.checks import typed_tables
from conftest import results_from
from fixtures.real_project import project_root

MAIN = Path(__file__).resolve().parents[1]
DEMO = MAIN / "data" / "raw" / "demo"
PARAMS = load_params(MAIN / "params.yaml")
LETTER = "Referral letter - Jane Doe - DOB 1961-03-14.pdf"


def _tables(folder: Path) -> dict[str, pd.DataFrame]:
    return {t: pd.read_csv(folder / f"{t}.csv", dtype="string") for t in ("clients", "sessions", "measurements")}


def _without_newest(tables: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], str]:
    s = tables["sessions"]
    first = s.groupby("client_id")["session_date"].min().sort_index()
    newest = str(first[first == first.max()].index[-1])
    gone = set(s.loc[s["client_id"] == newest, "session_id"])
    out = {
        "clients": tables["clients"][tables["clients"]["client_id"] != newest],
        "sessions": s[s["client_id"] != newest],
        "measurements": tables["measurements"][~tables["measurements"]["session_id"].isin(gone)],
    }
    return out, newest


def _project(root: Path, tables: dict[str, pd.DataFrame], ledger: Path, extra_file: str | None = None):
    root.mkdir(parents=True)
    shutil.copy(MAIN / "params.yaml", root / "params.yaml")
    shutil.copytree(MAIN / "config", root / "config")
    (root / "requirements.lock").write_text("fake-lock==1\n", encoding="utf-8")
    folder = root / "data" / "raw" / "clinic"
    folder.mkdir(parents=True)
    for name, df in tables.items():
        df.to_csv(folder / f"{name}.csv", index=False)
    if extra_file:
        (folder / extra_file).write_bytes(b"%PDF-1.4 referral")
    params = with_updates(
        load_params(root / "params.yaml"),
        {"data": {"input": "data/raw/clinic"}, "report": {"release_ledger": str(ledger)}},
    )
    with project_root(root):
        run_validate(params)
        run_join(params)
        run_model(params)
    return params


def _release(root: Path, params):
    with project_root(root):
        return run_report(params)


def _arm_values(folder_tables: dict[str, pd.DataFrame]) -> dict[str, dict]:
    t = typed_tables(folder_tables)
    ds = build_analysis_dataset(
        t["clients"], t["sessions"], t["measurements"], tuple(PARAMS.model.exposure.hip_focused)
    )
    return arm_summaries(primary_data(ds, PARAMS.model).data, PARAMS.model)


def test_attack_a_differencing_two_releases_recovers_nothing(tmp_path):
    full = _tables(DEMO)
    less, newest = _without_newest(full)
    # before: the raw arm summaries of the two builds give the newest client's baseline pain exactly
    a, b = _arm_values(less), _arm_values(full)
    arm = next(k for k in a if b[k]["n"] - a[k]["n"] == 1)
    value = b[arm]["n"] * b[arm]["baseline_mean"] - a[arm]["n"] * a[arm]["baseline_mean"]
    s, m = full["sessions"], full["measurements"]
    first = s[s["client_id"] == newest].sort_values("session_date")["session_id"].iloc[0]
    mine = m[(m["session_id"] == first) & (m["measure"] == PARAMS.model.measure) & (m["timing"] == PARAMS.model.timing)]
    assert value == pytest.approx(float(mine["value"].iloc[0]), abs=1e-6)  # the attack works on raw numbers

    ledger = tmp_path / "ledger"
    pa = _project(tmp_path / "a", less, ledger, extra_file=LETTER)
    out_a = _release(tmp_path / "a", pa)
    for rule in ("threshold", "consistency", "summaries", "dominance", "residual df", "differencing", "free text"):
        assert any(line.strip().startswith(rule) for line in out_a.splitlines()), rule
    entries = sorted((ledger / "KTESTCLINIC01").glob("release-*.json"))
    assert len(entries) == 1 and stat.S_IMODE(entries[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((ledger / "KTESTCLINIC01").stat().st_mode) == 0o700
    kept = entries[0].read_text(encoding="utf-8")
    assert '"table1"' in kept and newest not in kept and not any(c in kept for c in less["clients"]["client_id"])

    # (d) the referral letter's name, and the input folder's path, never reach a peer output
    peer = tmp_path / "a" / "reports" / "peer"
    html = (peer / "report.html").read_text(encoding="utf-8")
    for needle in ("Jane Doe", "Referral", "1961-03-14", "data/raw/clinic", "<code>clients.csv</code>"):
        assert needle not in html and needle not in (peer / "findings.json").read_text(encoding="utf-8")
    assert "<code>clients</code>" in html and "<code>registry</code>" in html
    therapist = (tmp_path / "a" / "reports" / "therapist" / "index.html").read_text(encoding="utf-8")
    assert "data/raw/clinic/clients.csv" in therapist  # the clinic's own page keeps the file names

    # after: release B (one more client) is refused, nothing is written, so nothing can be subtracted
    pb = _project(tmp_path / "b", full, ledger)
    with pytest.raises(PrivacyError, match=r"differs from the release of .* by 1 client"):
        _release(tmp_path / "b", pb)
    assert not (tmp_path / "b" / "reports" / "peer" / "findings.json").exists()
    # and were B published anyway, the rounded means (1 decimal) leave the value anywhere in 0..10
    bundle = findings.build_findings(
        results_from({"primary": {"arms": b}}),
        clinic_id="K",
        period=("2024-01", "2024-12"),
        n_by_group={},
        params=PARAMS,
        params_sha256="0" * 64,
        packages={},
        code_version="v0",
        min_cell=5,
    )
    bundle_a = findings.build_findings(
        results_from({"primary": {"arms": a}}),
        clinic_id="K",
        period=("2024-01", "2024-12"),
        n_by_group={},
        params=PARAMS,
        params_sha256="0" * 64,
        packages={},
        code_version="v0",
        min_cell=5,
    )
    mb, ma = bundle["arms"][arm]["baseline_mean"], bundle_a["arms"][arm]["baseline_mean"]
    lo = b[arm]["n"] * (mb - 0.05) - a[arm]["n"] * (ma + 0.05)
    hi = b[arm]["n"] * (mb + 0.05) - a[arm]["n"] * (ma - 0.05)
    assert sum(1 for v in range(11) if lo <= v <= hi) >= 5, (newest, lo, hi)


def test_table1_changes_since_the_last_release_are_counted():
    earlier = [{"table1": {"sex=F|hip-focused": 10, "sex=M|hip-focused": 12}}]
    now = {"sex=F|hip-focused": 13, "sex=M|hip-focused": 14, "sex=X|hip-focused": 0}
    assert disclosure.table1_differences(now, earlier, 5) == 2
    assert disclosure.table1_differences(now, [], 5) == 0


def test_same_data_released_again_passes(tmp_path):
    counts = audit.shown_counts({"findings.json:primary.n_clients": (76, "76")})
    earlier = [release.entry_for(counts, "2024-06")]
    assert release.differencing(counts, earlier, 5) == []
    more = audit.shown_counts({"findings.json:primary.n_clients": (81, "81")})
    assert release.differencing(more, earlier, 5) == []  # five new clients: a group, not a person
    one = audit.shown_counts({"findings.json:primary.n_clients": (77, "77")})
    (reason,) = release.differencing(one, earlier, 5)
    assert "\n" not in reason and "by 1 client" in reason


def _twelve_client_release(seed: int = 0):
    cl = simulate_clinic(PARAMS.simulate, seed, n_clients=12, primary_week=PARAMS.model.primary_week)
    raw = {k: getattr(cl, k).astype("string") for k in ("clients", "sessions", "measurements")}
    t = typed_tables(raw)
    ds = build_analysis_dataset(
        t["clients"], t["sessions"], t["measurements"], tuple(PARAMS.model.exposure.hip_focused)
    )
    arms = arm_summaries(primary_data(ds, PARAMS.model).data, PARAMS.model)
    flow = exclusion_flow(ds, t["clients"], t["sessions"], t["measurements"], flow_config(PARAMS))
    n_by_group = {"hip-focused": arms["hip_focused"]["n"], "knee-focused": arms["comparator"]["n"]}
    results = results_from(
        {
            "primary": {
                "arms": arms,
                "n_clients": sum(n_by_group.values()),
                "n_clients_by_group": {
                    "hip_focused": n_by_group["hip-focused"],
                    "comparator": n_by_group["knee-focused"],
                },
            },
            "secondary": {},
        }
    )
    bundle = findings.build_findings(
        results,
        clinic_id="K",
        period=("2024-01", "2024-12"),
        n_by_group=n_by_group,
        params=PARAMS,
        params_sha256="0" * 64,
        packages={},
        code_version="v0",
        min_cell=5,
    )
    groups = flow[flow["reason"] == "group"]
    by_group = pd.Series(groups["clients"].to_numpy(), index=groups["step"].str.replace("analysed: ", "")).sort_index()
    return cl, bundle, results, n_by_group, by_group, flow


def test_attack_b_no_suppressed_count_derivable_within_a_release():
    cl, bundle, results, n_by_group, by_group, flow = _twelve_client_release()
    focus = cl.sessions.sort_values("session_date").groupby("client_id")["focus"].first()
    assert (focus.str.contains("hip").sum(), len(focus)) == (2, 12)  # 2 hip-focused, 10 knee-focused clients
    assert n_by_group == {"hip-focused": 1, "knee-focused": 8}
    # before: the bundle alone gives the hidden hip-focused count back (9 - 8 = 1)
    assert bundle["n_clients_by_group"] == {"hip-focused": "<5", "knee-focused": "*"}
    assert (bundle["primary"]["n_clients"], bundle["arms"]["comparator"]["n"]) == (9, 8)
    true = release.bundle_true_counts({k: v.model_dump() for k, v in results.primary.arms.items()}, n_by_group, 9, None)
    before = audit.shown_counts(release.bundle_counts(bundle, true))
    rel = release.release_relations([c.name for c in before], {c.name: c.value for c in before})
    assert "findings.json:n_clients_by_group.hip-focused" in audit.derivable(before, rel, 5)
    # after: every count the release shares (bundle and report) is audited together; none is derivable
    counts, relations = disclosure.release_counts(bundle, results, n_by_group, by_group, flow, 5)
    assert audit.derivable(counts, relations, 5) == []
    safe = findings.apply_shown(bundle, counts)
    shown = [safe["primary"]["n_clients"], safe["arms"]["comparator"]["n"], safe["arms"]["hip_focused"]["n"]]
    assert not all(isinstance(v, int) for v in shown[:2])
    assert safe["arms"]["hip_focused"]["baseline_mean"] is None  # 1 client: no summaries
    assert findings.integrity_hash(safe) == safe["integrity"]["sha256"]


@pytest.mark.parametrize("n", [5, 6, 7, 8])
def test_attack_c_summaries_of_small_arms_pin_the_scores_and_are_withheld(n):
    table = summaries._all_published(n, 0, 10, 6)  # full precision, as the bundle used to publish
    _, inv, counts = np.unique(table, axis=0, return_inverse=True, return_counts=True)
    assert (counts[inv.ravel()] == 1).mean() > 0.9  # the attack: most arms admit exactly one multiset
    rng = np.random.default_rng(n)
    for _ in range(20):
        assert not summaries.summaries_shown(rng.integers(0, 11, n).tolist())


@pytest.mark.parametrize("n", [5, 8, 10])
def test_search_agrees_with_listing_every_multiset(n):
    rng = np.random.default_rng(n)
    for _ in range(40):
        scores = np.clip(np.round(rng.normal(6, 2.5, n)), 0, 10).tolist()
        assert summaries.consistent_multisets(scores, 2) == min(summaries.n_multisets(scores), 2)


def test_large_arms_are_decided_quickly_and_extremes_withheld():
    rng = np.random.default_rng(0)
    assert summaries.summaries_shown(np.clip(np.round(rng.normal(6, 2, 200)), 0, 10).tolist())
    assert not summaries.summaries_shown([0.0] * 29 + [10.0])  # mean 0.3, SD 1.8: only one set of scores fits


def test_summaries_shown_only_when_the_enumeration_leaves_a_choice():
    assert not summaries.summaries_shown([5.0] * 12)  # SD 0: everyone's score is known
    scores = [2, 3, 4, 5, 5, 6, 6, 7, 7, 8, 9]
    assert summaries.summaries_shown(scores) == (summaries.n_multisets(scores) >= 2)
    assert summaries.n_multisets([0, 0, 0, 0, 10]) == 1


def test_gate_refuses_strings_the_report_did_not_generate():
    bundle = {"primary": {"reason": "see " + LETTER, "status": "ok"}, "period": {"from": "2024-01"}}
    allowed = disclosure.allowed_strings({"status": "ok"})
    assert disclosure.free_strings(bundle, allowed) == ["$.primary.reason"]
    assert disclosure.contains_foreign("<td>Referral letter - Jane Doe</td>", {"Referral letter - Jane Doe"}) == 1


def test_foreign_names_are_the_input_folder_files_not_the_tables(tmp_path):
    for name in ("clients.csv", "sessions.xlsx", LETTER):
        (tmp_path / name).write_text("x", encoding="utf-8")
    names = disclosure.foreign_names(tmp_path)
    assert LETTER in names and not {"clients.csv", "sessions.xlsx", "clients"} & names


def test_ledger_is_refused_inside_a_repository():
    from analysis.errors import InputError

    with pytest.raises(InputError, match="release ledger"):
        release.ledger_dir(str(MAIN / "ledger"), "K")
    assert os.environ.get(release.LEDGER_ENV)  # tests never touch ~/.config
