"""The one-stage network fit: equal to lme4 on the pooled records, and clinics that refuse what would disclose.

The reference (tests/reference/lmm/network_4, R's lme4 + lmerTest) is four simulated clinics never used
elsewhere, one of 12 clients, fitted as ``y ~ 0 + clinic + common columns + (week | client)`` in one
frame. The network never pools them: each clinic answers sums over its own clients (InProcess transport
here; tests/test_network_flower.py carries the same rounds over Flower).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analysis.model.lmm import objective as ob
from analysis.network import combine as cb
from analysis.network import pieces as pz
from analysis.network.clinic import ClinicNode
from analysis.network.engine import NetworkFit, NetworkFitError
from analysis.network.pooled import REFERENCE_NETWORK, pooled_design, simulate_datasets
from analysis.network.protocol import ClinicLost, InProcess, Request, run
from analysis.network.spec import Rules, primary_spec
from analysis.params import load_params

REF = Path(__file__).parent / "reference" / "lmm" / "network_4.json"
#: the issue's tolerances: fixed effects and SEs 1e-6 relative, variance components 1e-5; df as the
#: single-frame reference tests (R's own regeneration noise 1e-5, tests/test_lmm_reference.py)
BETA_REL, SE_REL, VC_REL, DF_REL = 1e-6, 1e-6, 1e-5, 3e-5


@pytest.fixture(scope="module")
def network():
    params = load_params()
    spec = primary_spec(list(params.model.covariates), params.model.primary_week, params.model.alpha)
    data = simulate_datasets(params, REFERENCE_NETWORK["seeds"], REFERENCE_NETWORK["sizes"])
    said: list[str] = []
    nodes = [ClinicNode.from_dataset(lab, ds, params.model, spec, Rules(), say=said.append) for lab, ds in data]
    driver = NetworkFit(spec, Rules())
    transport = InProcess(nodes)
    rounds = run(driver, transport)
    return {
        "params": params,
        "spec": spec,
        "nodes": nodes,
        "driver": driver,
        "rounds": rounds,
        "said": said,
        "transport": transport,
        "data": data,
    }


def _ref():
    ref = json.loads(REF.read_text())
    names = {v: k for k, v in ref["term_map"].items()}
    return ref, names


def test_the_reference_has_a_solo_clinic_of_12(network):
    assert min(REFERENCE_NETWORK["sizes"]) == 12
    assert min(n.n_clients for n in network["nodes"]) <= 12


def test_federated_fit_equals_lme4_on_the_pooled_records(network):
    ref, names = _ref()
    res = network["driver"].result()
    assert res["status"] == "ok", res["reason"]
    # the network's design is the reference's, column for column
    common = [
        ref["term_map"][n] for n in ref["fixed_names"] if not ref["term_map"][n].startswith(("Intercept", "C(clinic)"))
    ]
    assert res["columns"] == common
    for sname in ref["fixed_names"]:
        term = ref["term_map"][sname]
        if term not in res["fixed_effects"]:
            continue
        ours = res["fixed_effects"][term]
        assert ours["estimate"] == pytest.approx(ref["beta"][sname], rel=BETA_REL, abs=1e-6 * ref["se"][sname])
        assert ours["se"] == pytest.approx(ref["se"][sname], rel=SE_REL)
        assert ours["df"] == pytest.approx(ref["satterthwaite"][sname]["df"], rel=DF_REL)
    vc = ref["varcorr"]
    assert res["random_effects"]["residual_variance"] == pytest.approx(vc["residual"], rel=VC_REL)
    assert res["random_effects"]["sd_intercept"] ** 2 == pytest.approx(vc["variances"]["x_Intercept"], rel=VC_REL)
    assert res["random_effects"]["sd_week"] ** 2 == pytest.approx(vc["variances"]["x_week"], rel=VC_REL)
    assert np.allclose(res["theta"], ref["theta"], rtol=VC_REL, atol=1e-6)
    assert res["reml_criterion"] == pytest.approx(ref["deviance"], abs=1e-7)
    head = next(c for c in ref["contrasts"] if c["name"].startswith("headline"))
    assert res["estimate"] == pytest.approx(head["estimate"], rel=BETA_REL)
    assert res["se"] == pytest.approx(head["se"], rel=SE_REL)
    assert res["df"] == pytest.approx(head["satterthwaite_df"], rel=DF_REL)
    assert res["p_value"] == pytest.approx(head["satterthwaite_p"], rel=1e-3)


def test_the_fit_is_proved_converged_in_few_rounds(network):
    res = network["driver"].result()
    assert res["converged"] and not res["singular"]
    assert res["checks"]["gradient_max"] < 1e-6 and res["checks"]["hessian_min_eig"] > 0
    assert network["rounds"] <= 20
    assert res["network"]["clinics"] == 4 and res["network"]["clients"] == sum(n.n_clients for n in network["nodes"])


def test_summed_pieces_equal_the_one_frame_engine_at_any_theta(network):
    spec = network["driver"].spec
    d = pooled_design(network["nodes"], spec)
    for theta in (np.array([0.7, 0.2, 0.4]), np.array([2.0, -0.5, 0.05])):
        total = None
        for node in network["nodes"]:
            p = pz.clinic_pieces(node._design(spec), theta)
            total = p if total is None else total + p
        ev = cb.evaluate(total, theta, len(network["nodes"]))
        dev, grad = ob.deviance_and_gradient(d, theta, True)
        assert ev.deviance == pytest.approx(dev, rel=1e-12)
        assert np.allclose(ev.gradient(), grad, rtol=1e-9, atol=1e-9)


def test_every_clinic_logged_only_counts_of_what_it_sent(network, tmp_path):
    params, spec = network["params"], network["spec"]
    label, ds = network["data"][0]
    log = tmp_path / "clinic.jsonl"
    node = ClinicNode.from_dataset(label, ds, params.model, spec, Rules(), log_path=log)
    others = [ClinicNode.from_dataset(lab, d, params.model, spec, Rules()) for lab, d in network["data"][1:]]
    run(NetworkFit(spec, Rules()), InProcess([node, *others]))
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines[0]["kind"] == "summary" and all(x["kind"] == "pieces" for x in lines[1:])
    assert [x["round"] for x in lines] == list(range(len(lines)))
    assert all(set(x) == {"round", "kind", "thetas", "values"} for x in lines)


def test_a_clinic_below_the_threshold_refuses_with_a_clear_line(network):
    params, spec = network["params"], network["spec"]
    tiny = simulate_datasets(params, [9001], [4])[0][1]
    said: list[str] = []
    small = ClinicNode.from_dataset("N09", tiny, params.model, spec, Rules(), say=said.append)
    nodes = [*network["nodes"], small]
    with pytest.raises(ClinicLost) as err:
        run(NetworkFit(spec, Rules()), InProcess(nodes))
    assert set(err.value.problems) == {"N09"}
    assert "fewer than the minimum of 5" in err.value.problems["N09"]
    assert len(said) == 1 and said[0].startswith("N09: refused round 0:") and "min_clients" in said[0]


def test_a_clinic_refuses_requests_outside_what_it_accepted(network):
    params, spec = network["params"], network["spec"]
    label, ds = network["data"][1]
    node = ClinicNode.from_dataset(label, ds, params.model, spec, Rules(max_rounds=3), say=lambda _: None)
    node.answer(Request(0, "summary", spec.to_json()))
    cols = network["driver"].spec.columns
    ok = Request(1, "pieces", spec.with_columns(cols).to_json(), np.array([[1.0, 0.0, 1.0]]))
    assert node.answer(ok).size == pz.size(2, len(cols))
    changed = spec.to_json() | {"primary_week": 99.0}
    with pytest.raises(Exception, match="changes the analysis"):
        node.answer(Request(2, "summary", changed))
    with pytest.raises(Exception, match="outside the parameter space"):
        node.answer(Request(2, "pieces", spec.with_columns(cols).to_json(), np.array([[-1.0, 0.0, 1.0]])))
    with pytest.raises(Exception, match="more than 3 rounds"):
        node.answer(ok)


def test_too_many_parameters_for_the_network_fails_cleanly(network):
    params, spec = network["params"], network["spec"]
    data = simulate_datasets(params, [9101, 9102], [12, 14])
    nodes = [ClinicNode.from_dataset(lab, ds, params.model, spec, Rules()) for lab, ds in data]
    with pytest.raises(NetworkFitError, match="max_parameter_ratio"):
        run(NetworkFit(spec, Rules()), InProcess(nodes))


def test_pack_sends_symmetric_pieces_once_and_round_trips(network):
    spec = network["driver"].spec
    node = network["nodes"][0]
    p = pz.clinic_pieces(node._design(spec), np.array([0.9, 0.1, 0.3]))
    vec = pz.pack(p)
    pc = len(spec.columns)
    assert vec.size == pz.size(2, pc) < 0.6 * sum(np.size(getattr(p, f)) for f in pz.shapes(2, pc))
    back = pz.unpack(vec, 2, pc)
    for name in pz.shapes(2, pc):
        assert np.allclose(getattr(back, name), getattr(p, name), rtol=1e-13, atol=1e-10), name
