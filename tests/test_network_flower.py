"""The Flower transport: real SuperLink/SuperNode processes on 127.0.0.1, compared with InProcess.

Two small federations (toy nodes and a toy driver defined here; the SuperNodes import them by the
factory names ``test_network_flower:toy_node`` and ``:toy_driver``) and in-process checks of the clinic's
side of the Flower app.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.compat.common import recorddict_compat as compat

from analysis.network import flower_apps
from analysis.network.fixedpoint import FixedPoint
from analysis.network.flower_local import simulate_federation
from analysis.network.flower_transport import request_to_fitins
from analysis.network.protocol import ClinicLost, InProcess, Refusal, Request, Total, run

CODEC = FixedPoint()


class ToyNode:
    """Answers ``[thetas.sum(axis=1) * weight, own fixed vector]``; misbehaves from round ``from`` on."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.label = str(cfg["label"])
        self.weight = float(cfg.get("weight", 1.0))
        self.mode = str(cfg.get("mode", "ok"))
        self.start = int(cfg.get("from", 0))
        rng = np.random.default_rng(int(cfg.get("seed", 0)))
        self.own = rng.standard_normal(3) * np.array([1e-6, 1.0, 1e6])

    def answer(self, request: Request) -> np.ndarray:
        vec = np.concatenate([request.thetas.sum(axis=1) * self.weight, self.own])
        if self.mode == "ok" or request.round < self.start:
            return vec
        if self.mode == "refuse":
            raise Refusal(f"round {request.round} asks for more than was agreed")
        if self.mode == "short":
            return vec[:-1]
        if self.mode == "nan":
            return vec * np.nan
        if self.mode == "sleep":
            time.sleep(60)
        raise RuntimeError(f"toy node failure with private detail {self.own[0]}")


def toy_node(cfg: dict[str, Any]) -> ToyNode:
    return ToyNode(cfg)


class ToyDriver:
    """Four rounds: a summary, then three 'pieces' rounds whose thetas depend on the last total."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.rounds = int(cfg.get("rounds", 4))
        self.totals: list[list[float]] = []
        self.clinics: list[list[str]] = []

    def first(self) -> Request:
        return Request(0, "summary", {"terms": ["arm", "week"]}, np.zeros((0, 2)))

    def next(self, total: Total) -> Request | None:
        self.totals.append([float(x) for x in total.vector])
        self.clinics.append(list(total.clinics))
        r = len(self.totals)
        if r >= self.rounds:
            return None
        t = float(total.vector[-1])
        return Request(r, "pieces", {"terms": ["arm", "week"]}, np.array([[0.5 * r, t * 1e-7], [1.0 / 3.0, -r]]))

    def result(self) -> dict[str, Any]:
        return {"totals": self.totals, "clinics": self.clinics}


def toy_driver(cfg: dict[str, Any]) -> ToyDriver:
    return ToyDriver(cfg)


class _Rounded:
    """A toy node whose answers are put on the fixed-point grid, as the secure transport sends them."""

    def __init__(self, node: ToyNode) -> None:
        self.node, self.label = node, node.label

    def answer(self, request: Request) -> np.ndarray:
        return CODEC.round(self.node.answer(request))


class _ExactSecure:
    """Reference for the secure transport: the exact fixed-point sum, with the drop-and-ask-again rule."""

    def __init__(self, nodes: list[ToyNode]) -> None:
        nodes = sorted(nodes, key=lambda n: n.label)
        self.plain = InProcess([_Rounded(n) for n in nodes])
        self.nodes = nodes

    def drop(self, labels: set[str]) -> None:
        self.plain.drop(labels)

    def ask(self, request: Request) -> Total:
        while True:
            try:
                total = self.plain.ask(request)
                break
            except ClinicLost as exc:
                self.plain.drop(set(exc.problems))
        answers = [CODEC.encode(n.answer(request)) for n in self.nodes if n.label in total.clinics]
        exact = CODEC.decode(np.sum(answers, axis=0), n=len(answers))
        assert np.allclose(exact, total.vector, rtol=1e-12, atol=1e-9)  # the float sum of InProcess agrees
        return Total(exact, total.clinics)


def _configs(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"node-factory": "test_network_flower:toy_node", "seed": i, "weight": i + 1, **s} for i, s in enumerate(specs)
    ]


def test_secure_federation_equals_in_process_and_drops_lost_clinics(tmp_path):
    """4 clinics through SecAgg+: R refuses round 1, M answers a short vector in round 2; both are named and
    dropped, and the driver starts again over the others (every round of one fit is a sum over the same
    clinics); every total equals the exact fixed-point sum."""
    specs = [{"label": "A"}, {"label": "B"}, {"label": "R", "mode": "refuse", "from": 1}]
    specs += [{"label": "M", "mode": "short", "from": 2}]
    configs = _configs(specs)
    out = tmp_path / "result.json"
    start = time.monotonic()
    res = simulate_federation(
        configs, "test_network_flower:toy_driver", {"on-lost": "drop", "min-clinics": 2, "rounds": 3}, out, timeout_s=20
    )
    elapsed = time.monotonic() - start
    assert json.loads(out.read_text()) == res
    assert res["secure"] is True and res["rounds"] == 3 and res["clinics"] == ["A", "B"]
    assert res["dropped"] == {
        "R": "refused: round 1 asks for more than was agreed",
        "M": "malformed answer: length 4, expected 5",
    }
    reference = ToyDriver({"rounds": 3})
    run(reference, _ExactSecure([toy_node(c) for c in configs if c["label"] in ("A", "B")]))
    assert res["result"]["clinics"] == reference.clinics == [["A", "B"]] * 3
    assert res["result"]["totals"] == reference.totals  # bit for bit: JSON keeps every float64 exactly

    log = res["log"]
    assert log[0]["kind"] == "hello" and [e["kind"] for e in log[-3:]] == ["summary", "pieces", "pieces"]
    assert all(e["bytes_to_clinics"] > 0 and e["bytes_from_clinics"] > 0 for e in log)
    assert log[1]["values"] == 3 and log[1]["clinics"] == 4 and log[-1]["clinics"] == 2
    print(
        f"\nsecure federation: {elapsed:.1f} s;", [(e["kind"], e["exchanges_s"], e["bytes_from_clinics"]) for e in log]
    )


def test_plain_federation_drops_a_malformed_clinic_and_stops_on_a_timeout(tmp_path):
    """Plain mode, drop down to 3 clinics: N's NaN in round 1 drops it and the driver starts again over A, B
    and T; T then sleeps through round 2, which would leave 2: the run stops, T is named, no result file."""
    configs = _configs(
        [{"label": "A"}, {"label": "B"}, {"label": "N", "mode": "nan", "from": 1}]
        + [{"label": "T", "mode": "sleep", "from": 2}]
    )
    configs = [{**c, "allow-plain": True} for c in configs]
    out = tmp_path / "result.json"
    rules = {"on-lost": "drop", "min-clinics": 3}
    with pytest.raises(ClinicLost) as caught:
        simulate_federation(configs, "test_network_flower:toy_driver", rules, out, secure=False, timeout_s=4)
    assert set(caught.value.problems) == {"T"} and "timed out" in caught.value.problems["T"]
    assert not out.exists()
    lost = json.loads(Path(f"{out}.lost.json").read_text())
    assert [e["kind"] for e in lost["log"]] == ["hello", "summary", "summary", "pieces"] and lost["clinics"] == [
        "A",
        "B",
        "N",
        "T",
    ]
    assert [e["clinics"] for e in lost["log"]] == [4, 4, 3, 3]


# -- the clinic's side, in process ----------------------------------------------------------------------------
@pytest.fixture
def in_a_task(monkeypatch):
    """Flower's messages take the run and node from the task they are made in: pretend to be in one."""
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 1), ("_node_id", 7), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value, raising=False)


def _context(node_config: dict[str, Any]) -> Context:
    return Context(run_id=1, node_id=7, node_config=node_config, state=RecordDict(), run_config={})


def _hello(node_config: dict[str, Any], secure: bool) -> ConfigRecord:
    msg = Message(
        RecordDict({"hello": ConfigRecord({"run": json.dumps({"secure": secure})})}),
        dst_node_id=7,
        message_type="query.hello",
    )
    return flower_apps.hello(msg, _context(node_config)).content.config_records["hello"]


def _answer(node_config: dict[str, Any], request: Request, secure: bool) -> Any:
    content = compat.fitins_to_recorddict(request_to_fitins(request, CODEC), True)
    msg = Message(content, dst_node_id=7, message_type="train" if secure else "train.plain")
    reply = flower_apps._answer(msg, _context(node_config), secure=secure)
    return compat.recorddict_to_fitres(reply.content, keep_input=True)


def test_clinic_refuses_plain_mode_unless_allowed(capsys, in_a_task):
    cfg = {"node-factory": "test_network_flower:toy_node", "label": "Q"}
    assert _hello(cfg, secure=True)["refused"] == "" and _hello(cfg, secure=True)["label"] == "Q"
    assert "secure aggregation" in str(_hello(cfg, secure=False)["refused"])
    assert _hello({**cfg, "allow-plain": True}, secure=False)["refused"] == ""
    assert "[clinic Q] refused the run" in capsys.readouterr().err


def test_clinic_answers_are_limbs_and_problems_are_reported_not_values(capsys, in_a_task):
    from flwr.common import parameters_to_ndarrays

    req = Request(1, "pieces", {}, np.array([[1.0, 2.0]]))
    cfg = {"node-factory": "test_network_flower:toy_node", "label": "Q", "seed": 3}
    res = _answer(cfg, req, secure=True)
    (limbs,) = parameters_to_ndarrays(res.parameters)
    assert res.num_examples == 1 and dict(res.metrics) == {"length": 4}
    assert np.array_equal(CODEC.decode(limbs, n=1), CODEC.round(toy_node(cfg).answer(req)))
    assert dict(_answer({**cfg, "mode": "nan"}, req, secure=True).metrics) == {
        "length": 4,
        "malformed": "values that are not finite",
    }
    failed = _answer({**cfg, "mode": "boom"}, req, secure=True)
    assert dict(failed.metrics) == {"error": "RuntimeError (details on the clinic's console)"}
    assert "private detail" in capsys.readouterr().err  # on the clinic's console only
    assert "refused" in _answer(cfg, req, secure=False).metrics


# -- the real network model over Flower ------------------------------------------------------------------------
def test_network_simulate_over_flower_equals_lme4_and_a_small_clinic_refuses(tmp_path, capsys):
    """`outcomes network simulate` on the four reference clinics (one of 12 clients) plus a clinic of 4:
    the small clinic refuses at the handshake (named, left out by --on-lost continue) and the fit over
    real Flower nodes with SecAgg+ equals lme4 on the pooled records (tests/reference/lmm/network_4)."""
    from analysis.cli import main
    from analysis.network.pooled import REFERENCE_NETWORK, simulate_datasets
    from analysis.params import load_params

    params = load_params()
    folders = []
    data = simulate_datasets(params, REFERENCE_NETWORK["seeds"], REFERENCE_NETWORK["sizes"])
    data += [("N05", simulate_datasets(params, [9001], [4])[0][1])]
    for label, ds in data:
        (tmp_path / label).mkdir()
        ds.to_parquet(tmp_path / label / "analysis.parquet")
        folders.append(str(tmp_path / label))
    out = tmp_path / "out"
    rc = main(["network", "simulate", *folders, "--out", str(out), "--on-lost", "continue"])
    err = capsys.readouterr().err
    assert rc == 0, err
    doc = json.loads((out / "federated.json").read_text())
    assert doc["clinics"] == ["N01", "N02", "N03", "N04"] and "min_clients" in doc["clinics_lost"]["N05"]
    assert doc["exchange"]["transport"] == "Flower, SecAgg+" and doc["exchange"]["bytes"] > 0
    ref = json.loads((Path(__file__).parent / "reference" / "lmm" / "network_4.json").read_text())
    head = next(c for c in ref["contrasts"] if c["name"].startswith("headline"))
    # federated.json is written at 6 significant digits (analysis.store): equal to lme4 at that resolution
    assert doc["estimate"] == pytest.approx(head["estimate"], rel=1e-5)
    assert doc["se"] == pytest.approx(head["se"], rel=1e-5)
    assert doc["df"] == pytest.approx(head["satterthwaite_df"], rel=3e-5)
    for sname, term in ref["term_map"].items():
        if term in doc["fixed_effects"]:
            assert doc["fixed_effects"][term]["estimate"] == pytest.approx(ref["beta"][sname], rel=1e-5, abs=1e-6)
            assert doc["fixed_effects"][term]["se"] == pytest.approx(ref["se"][sname], rel=1e-5)
    assert doc["random_effects"]["residual_variance"] == pytest.approx(ref["varcorr"]["residual"], rel=1e-5)
