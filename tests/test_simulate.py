"""The synthetic clinic generator: reproducible, follows the contract, carries a recoverable truth."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.cli import main
from analysis.contract import (
    ACTIVITIES,
    AGE_BANDS,
    EARLIEST_DATE,
    FOCI,
    ID_PATTERN,
    KNEES,
    SEXES,
    TABLES,
    TECHNIQUES,
    TIMINGS,
    load_registry,
)
from analysis.errors import InputError
from analysis.params import load_params, with_updates
from analysis.params_schema import Params
from analysis.simulate import REQUIRED_KEYS, format_tables, run_simulate, simulate_clinic

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
CFG = PARAMS["simulate"]
WEEK = float(PARAMS["model"]["primary_week"])
REGISTRY = load_registry(ROOT / "config" / "measures.yaml")
FILES = ("clients.csv", "sessions.csv", "measurements.csv", "truth.json")


def _params(tmp_path: Path) -> Params:
    return with_updates(
        load_params(ROOT / "params.yaml"), {"data": {"registry": str(ROOT / "config" / "measures.yaml")}}
    )


def _hashes(folder: Path) -> dict[str, str]:
    return {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in FILES}


@pytest.fixture(scope="module")
def small():
    return simulate_clinic(CFG, seed=11, n_clients=60, primary_week=WEEK)


@pytest.fixture(scope="module")
def large():
    return simulate_clinic(CFG, seed=12, n_clients=6000, primary_week=WEEK)


def _timeline(clinic) -> pd.DataFrame:
    """Sessions with session number, weeks since first, baseline focus and the pre NPRS (NaN if absent)."""
    s = clinic.sessions.sort_values(["client_id", "session_date", "session_id"]).reset_index(drop=True)
    g = s.groupby("client_id")
    m = clinic.measurements
    nprs = m[(m["measure"] == "knee_pain_nprs") & (m["timing"] == "pre")].set_index("session_id")["value"]
    return s.assign(
        k=g.cumcount(),
        n=g["session_id"].transform("size"),
        weeks=(s["session_date"] - g["session_date"].transform("min")).dt.days / 7.0,
        baseline_focus=g["focus"].transform("first"),
        nprs=s["session_id"].map(nprs).astype("float64"),
    )


# --------------------------------------------------------------------------- reproducibility


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path):
    params = _params(tmp_path)
    run_simulate(tmp_path / "a", params, seed=5, n_clients=40)
    run_simulate(tmp_path / "b", params, seed=5, n_clients=40)
    run_simulate(tmp_path / "c", params, seed=6, n_clients=40)
    a, b, c = (_hashes(tmp_path / x) for x in "abc")
    assert a == b
    assert all(a[f] != c[f] for f in FILES)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(FILES)  # no temp files left


def test_committed_demo_is_what_params_generate(tmp_path):
    """data/raw/demo must be regenerated (`outcomes simulate`) whenever the simulate params change."""
    run_simulate(tmp_path / "demo", _params(tmp_path))
    assert _hashes(tmp_path / "demo") == _hashes(ROOT / "data" / "raw" / "demo")


def test_cli_writes_the_clinic_with_overrides(tmp_path):
    ppath = tmp_path / "params.yaml"
    ppath.write_text(yaml.safe_dump(_params(tmp_path).model_dump(mode="json", by_alias=True)), encoding="utf-8")
    code = main(
        [
            "--params",
            str(ppath),
            "simulate",
            "--out",
            str(tmp_path / "x"),
            "--seed",
            "3",
            "--clients",
            "25",
            "--effect",
            "-0.2",
        ]
    )
    assert code == 0
    truth = json.loads((tmp_path / "x" / "truth.json").read_text(encoding="utf-8"))
    assert truth["seed"] == 3 and truth["params"]["n_clients"] == 25
    assert truth["true_slope_difference"] == -0.2
    assert len(pd.read_csv(tmp_path / "x" / "clients.csv")) == 25


# --------------------------------------------------------------------------- the contract


def test_typed_tables_follow_the_schema(small):
    assert list(small.clients.columns) == TABLES["clients"].column_names
    assert list(small.sessions.columns) == TABLES["sessions"].column_names
    assert list(small.measurements.columns) == TABLES["measurements"].column_names
    assert small.clients["symptom_weeks"].dtype == np.int64
    assert small.clients["sitting_hours"].dtype == np.float64
    assert small.sessions["session_date"].dtype == "datetime64[ns]"
    assert small.sessions["minutes"].dtype == np.int64
    assert small.measurements["value"].dtype == np.float64
    for frame, cols in (
        (small.clients, ("client_id", "clinic_id", "sex", "age_band", "activity", "knee")),
        (small.sessions, ("session_id", "client_id", "therapist_id", "focus", "techniques")),
        (small.measurements, ("session_id", "measure", "timing")),
    ):
        for col in cols:
            assert frame[col].dtype == "str", col


def test_categories_ranges_ids_keys_and_dates(small):
    cl, se, me = small.clients, small.sessions, small.measurements
    ids = pd.concat([cl["client_id"], se["session_id"], se["therapist_id"].dropna(), cl["clinic_id"]])
    assert ids.str.fullmatch(ID_PATTERN).all()
    assert cl["client_id"].str.fullmatch(r"C\d{4}").all() and se["session_id"].str.fullmatch(r"S\d{5}").all()
    for col, cats in (("sex", SEXES), ("age_band", AGE_BANDS), ("activity", ACTIVITIES), ("knee", KNEES)):
        assert cl[col].isin(cats).all(), col
    assert cl["symptom_weeks"].between(0, 1040).all()
    assert cl["sitting_hours"].dropna().between(0, 14).all()
    assert se["focus"].isin(FOCI).all()
    techs = se["techniques"].dropna().str.split(";").explode()
    assert techs.isin(TECHNIQUES).all()
    assert se["minutes"].between(10, 180).all()
    assert me["timing"].isin(TIMINGS).all()
    # unique keys and foreign keys
    assert cl["client_id"].is_unique and se["session_id"].is_unique
    assert not me.duplicated(["session_id", "measure", "timing"]).any()
    assert se["client_id"].isin(cl["client_id"]).all() and cl["client_id"].isin(se["client_id"]).all()
    assert me["session_id"].isin(se["session_id"]).all()
    # dates: weekdays, not before 2000 nor after the fixed reference date, strictly increasing per client
    d = se["session_date"]
    assert (d.dt.normalize() == d).all() and (d.dt.day_of_week < 5).all()
    assert d.min() >= pd.Timestamp(EARLIEST_DATE) and d.max() <= pd.Timestamp(CFG["reference_date"])
    assert (se.groupby("client_id")["session_date"].diff().dropna() > pd.Timedelta(0)).all()
    # measurement values within the registry's ranges, whole numbers where the registry says so
    for key, group in me.groupby("measure"):
        m = REGISTRY[key]
        assert group["value"].between(m.minimum, m.maximum).all(), key
        if m.integer:
            assert (group["value"] == group["value"].round()).all(), key


def test_missing_values_occur_where_the_contract_allows(large):
    assert large.clients["sitting_hours"].isna().any()
    assert large.sessions["therapist_id"].isna().any() and large.sessions["techniques"].isna().any()
    m = large.measurements
    per_session = m.groupby("session_id")["measure"].nunique()
    assert (per_session < 4).any()  # LEFS / hip IR not always taken
    assert (m["timing"] == "post").sum() < (m["timing"] == "pre").sum()
    assert not large.clients[["sex", "age_band", "symptom_weeks", "activity", "knee"]].isna().any().any()


def test_csv_text_format(tmp_path, small):
    text = format_tables(small)
    dates = text["sessions"]["session_date"]
    assert dates.str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    values = text["measurements"]["value"]
    assert not values.str.endswith(".0").any() and values.str.fullmatch(r"\d+(\.\d)?").all()
    assert (text["clients"]["sitting_hours"] == "").sum() == small.clients["sitting_hours"].isna().sum()
    run_simulate(tmp_path, _params(tmp_path), seed=11, n_clients=60)
    raw = (tmp_path / "sessions.csv").read_bytes()
    assert raw.startswith(b"session_id,client_id,session_date,") and b"\r" not in raw
    raw.decode("utf-8")


def test_real_validator_accepts_a_generated_clinic_and_types_it_identically(tmp_path):
    validate = pytest.importorskip("analysis.validate")
    from analysis.load import load_inputs

    run_simulate(tmp_path, _params(tmp_path), seed=4, n_clients=30)
    clinic = simulate_clinic(CFG, seed=4, n_clients=30, primary_week=WEEK)
    result = validate.validate_tables(load_inputs(tmp_path), REGISTRY)
    assert result.errors == [], [p.line() for p in result.errors[:5]]
    for name in TABLES:
        pd.testing.assert_frame_equal(result.tables[name], getattr(clinic, name))


# --------------------------------------------------------------------------- the truth


def test_truth_has_the_fields(small):
    t = small.truth
    for key in (
        "true_slope_difference",
        "true_change_difference_primary_week",
        "seed",
        "params",
        "moderation",
        "mediation",
        "estimand",
        "dgp",
        "sample",
        "counts",
        "reference_date",
    ):
        assert key in t, key
    assert t["true_slope_difference"] == CFG["hip_slope_effect"]
    assert t["true_change_difference_primary_week"] == pytest.approx(6 * CFG["hip_slope_effect"])
    assert t["seed"] == 11 and t["params"]["n_clients"] == 60
    assert set(REQUIRED_KEYS) <= set(t["params"])
    mod = t["moderation"]
    assert mod["centre_symptom_weeks"] == pytest.approx(np.exp(mod["centre_log_symptom_weeks"]) - 1)
    # the benefit shrinks with longer duration (effect is negative = better)
    by_sw = mod["slope_difference_at_symptom_weeks"]
    assert by_sw["4"] < by_sw["26"] < by_sw["104"]
    med = t["mediation"]
    assert med["direct_slope"] + med["indirect_slope"] == pytest.approx(t["true_slope_difference"])
    json.dumps(t, allow_nan=False)


def test_zero_effect_gives_zero_truth_and_no_difference_in_change():
    clinic = simulate_clinic(CFG, seed=21, n_clients=4000, effect=0.0, primary_week=WEEK)
    assert clinic.truth["true_slope_difference"] == 0.0
    assert clinic.truth["true_change_difference_primary_week"] == 0.0
    assert clinic.truth["mediation"]["indirect_slope"] == 0.0
    assert _raw_week6_difference(clinic) == pytest.approx(0.0, abs=0.25)


def test_raw_week6_difference_tracks_the_truth(large):
    # crude (no model, dropout and rounding ignored): close to the truth, not to zero
    diff = _raw_week6_difference(large)
    assert diff == pytest.approx(large.truth["true_change_difference_primary_week"], abs=0.3)


def _raw_week6_difference(clinic) -> float:
    t = _timeline(clinic)
    base = t.loc[t["k"] == 0].set_index("client_id")["nprs"]
    w6 = t[(t["k"] > 0) & t["weeks"].between(5, 7)].assign(change=lambda d: d["nprs"] - d["client_id"].map(base))
    w6 = w6.dropna(subset=["change"]).groupby("client_id").first()
    hip = w6["baseline_focus"].isin(["hip", "hip_and_knee"])
    return float(w6.loc[hip, "change"].mean() - w6.loc[w6["baseline_focus"] == "knee", "change"].mean())


# --------------------------------------------------------------------------- mechanisms


def test_non_improvers_drop_out_more(large):
    t = _timeline(large)
    base = t.loc[t["k"] == 0].set_index("client_id")["nprs"]
    at3 = (
        t[t["k"] == 2].assign(improvement=lambda d: d["client_id"].map(base) - d["nprs"]).dropna(subset=["improvement"])
    )
    at3 = at3[at3["nprs"] > CFG["recovered_nprs"]]  # leave out the recovered, who also stop more often
    stopped = at3["n"] == 3
    not_improving = at3["improvement"] < CFG["no_progress_points"]
    assert not_improving.sum() > 200 and (~not_improving).sum() > 200
    assert stopped[not_improving].mean() > stopped[~not_improving].mean() + 0.07


def test_hip_focus_share_rises_with_sitting_hours(large):
    first = _timeline(large).query("k == 0").merge(large.clients, on="client_id")
    hip = first["focus"].isin(["hip", "hip_and_knee"])
    low, high = first["sitting_hours"] <= 4, first["sitting_hours"] >= 9
    assert hip[high].mean() > hip[low].mean() + 0.15
    # about 5% of clients start with focus 'other'
    assert (first["focus"] == "other").mean() == pytest.approx(CFG["focus_other_share"], abs=0.02)


def test_later_sessions_sometimes_switch_focus(large):
    t = _timeline(large)
    later = t[t["k"] > 0]
    switched = (later["focus"] != later["baseline_focus"]).mean()
    assert 0.03 < switched < 0.3


def test_magnitudes_are_realistic(large):
    t = _timeline(large)
    base = t.loc[t["k"] == 0, "nprs"].dropna()
    assert base.mean() == pytest.approx(5.5, abs=0.3) and base.std() == pytest.approx(1.8, abs=0.3)
    assert len(large.sessions) / len(large.clients) == pytest.approx(6.5, abs=1.0)
    ir = large.measurements.query("measure.str.startswith('hip_ir') and timing == 'pre'")["value"]
    assert ir.quantile(0.05) >= 25 and ir.quantile(0.5) <= 45
    sw = large.clients["symptom_weeks"]
    assert 14 <= sw.median() <= 28 and (sw > 104).mean() > 0.02


def test_scales_to_20000_clients():
    start = time.perf_counter()
    clinic = simulate_clinic(CFG, seed=1, n_clients=20_000, primary_week=WEEK)
    assert len(clinic.clients) == 20_000
    assert clinic.clients["client_id"].iloc[-1] == "C20000"
    assert time.perf_counter() - start < 30  # about 0.5 s on a laptop; generous for slow CI


# --------------------------------------------------------------------------- configuration errors


def test_missing_key_is_a_clear_error():
    cfg = {k: v for k, v in CFG.items() if k != "knee_slope"}
    with pytest.raises(InputError, match="knee_slope"):
        simulate_clinic(cfg, seed=1, primary_week=WEEK)


def test_unknown_category_is_a_clear_error():
    cfg = {**CFG, "sex_shares": {"F": 0.5, "female": 0.5}}
    with pytest.raises(InputError, match=re.escape("simulate.sex_shares")):
        simulate_clinic(cfg, seed=1, primary_week=WEEK)
