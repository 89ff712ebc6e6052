"""Stages never combine outputs of different runs: each checks the chain of hashes the previous one recorded."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis.errors import InputError
from analysis.join import run_join
from analysis.model.run import run_model
from analysis.params import load_params
from analysis.pool.demo import clinic_params
from analysis.report.publish import run_report
from analysis.simulate import run_simulate
from analysis.validate import run_validate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def clinic(tmp_path):
    p = clinic_params(load_params(ROOT / "params.yaml"), tmp_path, "lineage-test")
    run_simulate(tmp_path / "data", p, seed=5, n_clients=60)
    run_validate(p)
    run_join(p)
    return p, tmp_path


def test_join_refuses_tables_from_an_interrupted_validate(clinic):
    p, root = clinic
    # an earlier run's table left beside this run's others (validate killed between two writes)
    sessions = root / "interim" / "sessions.parquet"
    pd.read_parquet(sessions).head(10).to_parquet(sessions)
    with pytest.raises(InputError, match="is not the file the last `outcomes validate` run wrote"):
        run_join(p)


def test_report_refuses_results_of_another_dataset(clinic, monkeypatch, tmp_path):
    p, root = clinic
    run_model(p)
    run_report(p)
    # new data arrive and are joined, but the model step is not re-run (or refused): stale results
    run_simulate(root / "data", p, seed=6, n_clients=70)
    run_validate(p)
    run_join(p)
    with pytest.raises(InputError, match="made from another analysis dataset"):
        run_report(p)
    run_model(p)
    # the chain is whole again (this test is about lineage: the release of different data goes to a fresh
    # ledger, since a release a few clients from the last is refused by design, tested in test_release.py)
    monkeypatch.setenv("HIPKNEE_RELEASE_LEDGER", str(tmp_path / "fresh-ledger"))
    run_report(p)


def test_model_refuses_a_dataset_changed_by_hand(clinic):
    p, root = clinic
    dataset = Path(p.join.out)
    pd.read_parquet(dataset).head(100).to_parquet(dataset)
    with pytest.raises(InputError, match="re-run `outcomes join`"):
        run_model(p)
