"""``outcomes network simulate`` as a user runs it: clinic folders in, the network fit out, or one clear line."""

from __future__ import annotations

import json

import pytest

from analysis.cli import main
from analysis.network.pooled import simulate_datasets
from analysis.params import load_params


@pytest.fixture(scope="module")
def clinics(tmp_path_factory):
    root = tmp_path_factory.mktemp("network")
    params = load_params()
    folders = []
    for label, ds in simulate_datasets(params, [8101, 8102, 8103], [30, 45, 60]):
        (root / label).mkdir()
        ds.to_parquet(root / label / "analysis.parquet")
        folders.append(root / label)
    tiny = simulate_datasets(params, [8109], [4])[0][1]
    (root / "tiny").mkdir()
    tiny.to_parquet(root / "tiny" / "analysis.parquet")
    return root, folders


def test_simulate_writes_the_network_fit(clinics, tmp_path, capsys):
    _, folders = clinics
    out = tmp_path / "out"
    rc = main(["network", "simulate", *map(str, folders), "--out", str(out), "--transport", "in-process"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "network fit ok: 3 clinics" in captured.out
    doc = json.loads((out / "federated.json").read_text())
    assert doc["status"] == "ok" and doc["clinics"] == ["N01", "N02", "N03"]
    for key in ("estimate", "se", "df", "ci_low", "ci_high", "p_value", "fixed_effects", "random_effects"):
        assert doc[key] is not None
    html = (out / "federated.html").read_text()
    assert "one model over 3 clinics" in html and str(folders[0]) not in html and "tmp" not in html


def test_a_clinic_below_the_threshold_stops_the_run_with_one_line(clinics, tmp_path, capsys):
    root, folders = clinics
    out = tmp_path / "out"
    rc = main(
        ["network", "simulate", *map(str, folders), str(root / "tiny"), "--out", str(out), "--transport", "in-process"]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "N04: refused round 0:" in err and "min_clients" in err
    assert "error: clinic N04: refused:" in err and "nothing was written" in err
    assert "Traceback" not in err and not out.exists()


def test_continue_rule_goes_on_without_the_refusing_clinic(clinics, tmp_path, capsys):
    root, folders = clinics
    out = tmp_path / "out"
    argv = ["network", "simulate", *map(str, folders), str(root / "tiny"), "--out", str(out)]
    rc = main([*argv, "--transport", "in-process", "--on-lost", "continue"])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((out / "federated.json").read_text())
    assert doc["clinics"] == ["N01", "N02", "N03"] and list(doc["clinics_lost"]) == ["N04"]


def test_usage_errors_exit_2(clinics, tmp_path):
    _, folders = clinics
    assert main(["network", "simulate", str(folders[0]), "--out", str(tmp_path), "--transport", "in-process"]) == 2
    assert (
        main(["network", "simulate", *map(str, folders), "--out", str(tmp_path), "--transport", "carrier-pigeon"]) == 2
    )
    assert (
        main(
            [
                "network",
                "simulate",
                str(tmp_path),
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
                "--transport",
                "in-process",
            ]
        )
        != 0
    )


def test_node_and_lead_commands_say_which_flower_commands_they_run(clinics, tmp_path, capsys):
    _, folders = clinics
    ca, key = tmp_path / "ca.crt", tmp_path / "clinic.key"
    ca.write_text("x")
    key.write_text("x")
    key.chmod(0o644)
    argv = ["network", "node", str(folders[0]), "--lead", "link.example.org:9092", "--ca", str(ca), "--key", str(key)]
    assert main([*argv, "--print"]) == 2  # a key others can read is refused
    assert "chmod 600" in capsys.readouterr().err
    key.chmod(0o600)
    assert main([*argv, "--label", "clinic-07", "--print"]) == 0
    line = capsys.readouterr().out
    assert line.startswith("flower-supernode --superlink link.example.org:9092 --root-certificates")
    assert "--auth-supernode-private-key" in line and 'node-factory="analysis.network.clinic:node_from_config"' in line
    assert 'label="clinic-07"' in line
    assert main(["network", "node", str(tmp_path), "--lead", "h:1", "--ca", str(ca), "--key", str(key), "--print"]) != 0

    out = tmp_path / "lead"
    assert main(["network", "lead", "--out", str(out), "--clinics", "6", "--print"]) == 0
    assert capsys.readouterr().out.strip() == f"flwr run {out / 'flower-app'} network --stream"
    app = (out / "flower-app" / "pyproject.toml").read_text()
    assert 'serverapp = "analysis.network.flower_apps:server_app"' in app and '"clinics" = 6' in app
    assert '"driver-factory" = "analysis.network.engine:driver_from_config"' in app and '"secure" = true' in app
