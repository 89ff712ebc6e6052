"""outcomes pool: checks before pooling (one clear line each, nothing written), the pooled result, the
outputs, and a small demo network run end to end through the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from analysis.cli import main
from analysis.params import load_params, with_updates
from analysis.pool import meta
from analysis.pool.bundle import read_bundles
from analysis.pool.run import pool, run_pool, schema
from analysis.report import findings as fnd
from conftest import results_from

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def bundle(
    clinic: str,
    estimate: float,
    se: float,
    *,
    measure: str = "knee_pain_nprs",
    lor=(0.3, 0.4),
    chron=(-0.01, 0.04),
    mcid_points: float = 2.0,
) -> dict:
    params = with_updates(load_params(ROOT / "params.yaml"), {"model": {"measure": measure}})
    results = {
        "primary": {
            "status": "ok",
            "estimate": estimate,
            "se": se,
            "df": 60.0,
            "df_method": "satterthwaite",
            "ci_low": estimate - 2 * se,
            "ci_high": estimate + 2 * se,
            "p_value": 0.04,
            "n_clients": 80,
            "n_observations": 500,
            "converged": True,
            "arms": {
                a: {
                    "n": 40,
                    "baseline_mean": 6.0,
                    "baseline_sd": 1.5,
                    "n_endpoint": 30,
                    "change_mean": -2.0,
                    "change_sd": 1.8,
                }
                for a in ("hip_focused", "comparator")
            },
        },
        "secondary": {
            "responders": {
                "status": "done",
                "definition": "2 points or 30%",
                "n_hip_focused": 30,
                "responders_hip_focused": 18,
                "n_comparator": 30,
                "responders_comparator": 12,
                "log_odds_ratio": {"estimate": lor[0], "se": lor[1], "method": "Woolf (unadjusted)"},
            },
            "chronicity": {"status": "done", "interaction": {"estimate": chron[0], "se": chron[1], "df": 70.0}},
        },
    }
    return fnd.build_findings(
        results_from(results),
        clinic_id=clinic,
        period=("2024-01", "2025-06"),
        n_by_group={"hip-focused": 40, "knee-focused": 40},
        params=params,
        params_sha256="0" * 64,
        packages={"numpy": "2"},
        code_version="test",
        min_cell=5,
        mcid={"points": mcid_points, "percent": 30.0},
    )


def write(tmp_path: Path, b: dict, name: str | None = None) -> Path:
    path = tmp_path / (name or f"{b['clinic_id']}.json")
    path.write_text(json.dumps(b), encoding="utf-8")
    return path


def test_pooled_estimate_is_metafor_s_estimator_on_the_clinic_numbers():
    bs = [
        bundle("k-a", -1.1, 0.4, lor=(0.5, 0.4)),
        bundle("k-b", -0.5, 0.3, lor=(0.1, 0.35)),
        bundle("k-c", -0.8, 0.5, lor=(0.3, 0.5), chron=(0.02, 0.05)),
    ]
    r = pool(bs)
    direct = meta.rma([-1.1, -0.5, -0.8], [0.16, 0.09, 0.25])
    assert r["primary"]["status"] == "pooled" and r["k"] == 3
    assert r["primary"]["pooled"] == pytest.approx(direct["pooled"], rel=1e-12)
    assert [c["clinic_id"] for c in r["clinics"]] == ["k-a", "k-b", "k-c"]
    assert len(r["primary"]["leave_one_out"]) == 3 and len(r["primary"]["influence"]) == 3
    assert r["responders"]["status"] == "pooled" and r["chronicity"]["status"] == "pooled"
    import jsonschema

    jsonschema.validate(json.loads(json.dumps(r)), schema())


def test_identical_estimates_do_not_crash_the_diagnostics():
    r = pool([bundle(c, -0.8, 0.3) for c in ("k-a", "k-b", "k-c")])
    assert r["primary"]["status"] == "pooled" and r["primary"]["tau2"] == 0.0
    assert len(r["primary"]["influence"]) == 3  # degenerate spread: NaN or 0 diagnostics, not a crash


def test_one_clinic_is_not_pooled_and_two_give_a_warning():
    one = pool([bundle("k-a", -1.1, 0.4)])
    assert one["primary"]["status"] == "not_pooled" and "nothing to pool" in one["primary"]["reason"]
    two = pool([bundle("k-a", -1.1, 0.4), bundle("k-b", -0.5, 0.3)])
    assert two["primary"]["status"] == "pooled"
    assert any("only 2 clinics" in w for w in two["primary"]["warnings"])


def test_outputs_are_written_and_reproducible(tmp_path):
    paths = [
        write(tmp_path, bundle(c, e, s)) for c, e, s in (("k-a", -1.1, 0.4), ("k-b", -0.5, 0.3), ("k-c", -0.8, 0.5))
    ]
    text = run_pool(paths, tmp_path / "out", allow_unsigned=True)
    assert "3 clinics pooled" in text
    files = ("pooled.json", "forest.svg", "pooled.html", "pooled.pdf")
    first = {f: (tmp_path / "out" / f).read_bytes() for f in files}
    run_pool(list(reversed(paths)), tmp_path / "out", allow_unsigned=True)  # order of the arguments does not matter
    assert {f: (tmp_path / "out" / f).read_bytes() for f in files} == first
    html = first["pooled.html"].decode()
    assert "prediction interval" in html and "Limitations" in html and "k-b" in html
    assert first["pooled.pdf"].startswith(b"%PDF")


@pytest.mark.parametrize("case", ["tampered", "other_measure", "suppressed", "not_json", "old_schema", "duplicate"])
def test_bad_bundles_give_one_clear_line_and_write_nothing(tmp_path, capsys, case):
    good = [write(tmp_path, bundle("k-a", -1.1, 0.4)), write(tmp_path, bundle("k-b", -0.5, 0.3))]
    if case == "tampered":
        b = bundle("k-c", -0.8, 0.5)
        b["primary"]["estimate"] = -2.5  # edited after the report wrote it
        bad, expect = write(tmp_path, b), "integrity hash does not match"
    elif case == "other_measure":
        bad, expect = write(tmp_path, bundle("k-c", -0.8, 0.5, measure="lefs")), "estimates a different thing"
    elif case == "suppressed":
        b = bundle("k-c", -0.8, 0.5)
        b["primary"]["se"] = "<5"
        bad, expect = write(tmp_path, b), "suppressed or text value"
    elif case == "not_json":
        bad = tmp_path / "notes.json"
        bad.write_text("clinic c: estimate -0.8\n")
        expect = "not JSON"
    elif case == "old_schema":
        b = bundle("k-c", -0.8, 0.5)
        b["schema_version"] = "1.1.0"
        bad, expect = write(tmp_path, b), "unknown schema version 1.1.0"
    else:
        bad, expect = write(tmp_path, bundle("k-a", -0.8, 0.5), "copy.json"), "clinic id 'k-a' is also in"
    code = main(["pool", "--allow-unsigned", *map(str, good), str(bad), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code != 0
    lines = [line for line in err.splitlines() if expect in line]
    assert len(lines) == 1 and str(bad) in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_other_measure_names_the_differing_field(tmp_path):
    _, problems, _ = read_bundles(
        [write(tmp_path, bundle("k-a", -1.1, 0.4)), write(tmp_path, bundle("k-b", -0.5, 0.3, measure="lefs"))]
    )
    assert len(problems) == 1 and "measure 'lefs' vs 'knee_pain_nprs'" in problems[0]


def test_usage_errors_exit_2(tmp_path):
    p = write(tmp_path, bundle("k-a", -1.1, 0.4))
    assert main(["pool", "--allow-unsigned", str(p), "--out", str(tmp_path / "o"), "--tau2", "ML"]) == 2


def test_demo_network_recovers_the_generating_effect(tmp_path):
    from analysis.pool.demo import run_network

    params = load_params(ROOT / "params.yaml")
    # three small clinics and a tiny between-clinic SD: a fast end-to-end run of the whole pipeline per clinic
    r = run_network(
        tmp_path / "net",
        params,
        n_clinics=3,
        tau=0.02,
        seed=7,
        sizes=(90, 120, 150),
        solo_sizes=(12, 20),
        say=lambda s: None,
    )
    assert (tmp_path / "net" / "pooled" / "pooled.pdf").is_file()
    assert len(r["clinics"]) == 3 and r["pooled"]["ci_low"] < r["pooled"]["ci_high"]
    truth, p = r["truth"]["mean_change_difference"], r["pooled"]
    assert abs(p["estimate"] - truth) < 3 * p["se"] + 0.2
    ids = {
        json.loads((tmp_path / "net" / c["clinic"] / "peer" / "findings.json").read_text())["clinic_id"]
        for c in r["clinics"]
    }
    assert ids == {"clinic-a", "clinic-b", "clinic-c"}  # each clinic its own id, no shared default
    # the one-stage network fit uses the solo practices that send no bundle, beside two-stage pooling
    one = r["one_stage"]
    assert one["clinics"] == 5 and not (tmp_path / "net" / "solo-1" / "peer").exists()
    assert abs(one["estimate"] - truth) < 3 * one["se"] + 0.2
    fed = json.loads((tmp_path / "net" / "federated" / "federated.json").read_text())
    assert fed["comparison"]["two_stage"]["clinics"] == 3 and fed["comparison"]["one_stage"]["clinics"] == 5
    assert (
        "solo-1" in fed["clinics"]
        and "One-stage and two-stage side by side" in (tmp_path / "net" / "federated" / "federated.html").read_text()
    )


def test_pool_reports_its_steps(tmp_path):
    steps: list[str] = []
    paths = [write(tmp_path, bundle(c, e, s)) for c, e, s in (("k-a", -1.1, 0.4), ("k-b", -0.5, 0.3))]
    run_pool(paths, tmp_path / "out", progress=steps.append, allow_unsigned=True)
    assert steps[0].startswith("checking 2 bundle(s)") and any("pooled report" in s for s in steps)


def test_one_and_two_clinics_render(tmp_path):
    one = run_pool([write(tmp_path, bundle("k-a", -1.1, 0.4))], tmp_path / "one", allow_unsigned=True)
    assert "not pooled" in one and "Not pooled" in (tmp_path / "one" / "pooled.html").read_text()
    two = run_pool(
        [write(tmp_path, bundle("k-a", -1.1, 0.4)), write(tmp_path, bundle("k-b", -0.5, 0.3))],
        tmp_path / "two",
        allow_unsigned=True,
    )
    assert "WARNING: only 2 clinics" in two and (tmp_path / "two" / "pooled.pdf").is_file()


def test_two_strongly_disagreeing_clinics_are_pooled(tmp_path, capsys):
    # 6 SEs apart: the Q-profile upper bound for tau^2 is above 1e4 (a capped search stopped the pooling)
    paths = [write(tmp_path, bundle("k-a", -3.0, 0.5)), write(tmp_path, bundle("k-b", 3.0, 0.5))]
    code = main(["pool", "--allow-unsigned", *map(str, paths), "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    primary = json.loads((tmp_path / "out" / "pooled.json").read_text())["primary"]
    assert primary["status"] == "pooled" and 1e4 < primary["tau2_ci"][1] < float("inf")


def test_responders_with_different_mcids_are_not_pooled():
    same = pool([bundle("k-a", -1.1, 0.4), bundle("k-b", -0.5, 0.3), bundle("k-c", -0.8, 0.5)])
    assert same["responders"]["status"] == "pooled" and same["responders"]["mcid"] == {"points": 2.0, "percent": 30.0}
    mixed = pool([bundle("k-a", -1.1, 0.4), bundle("k-b", -0.5, 0.3), bundle("k-c", -0.8, 0.5, mcid_points=1.0)])
    assert mixed["primary"]["status"] == "pooled"  # the primary estimand does not depend on the MCID
    assert mixed["responders"]["status"] == "not_pooled" and "different MCIDs" in mixed["responders"]["reason"]
    import jsonschema

    jsonschema.validate(json.loads(json.dumps(mixed)), schema())
