"""I/O edge of ``outcomes network simulate``: clinic folders in, ``federated.json`` and ``federated.html`` out.

Each CLINIC_DIR holds one clinic's joined analysis dataset (``analysis.parquet``, or a project folder
with ``data/processed/analysis.parquet``: what ``outcomes validate`` and ``outcomes join`` write from the
de-identified tables). One node per folder answers from it; the lead's driver fits the network model.
The transport is Flower (a server and one node per clinic as real processes on 127.0.0.1, with SecAgg+)
or ``in-process`` (the same rounds in this process, for a quick look). Nothing is written unless the fit
finishes: a clinic that refuses, drops out, times out or answers malformed is named and, by the rule
``on_lost`` (``fail``: stop; ``continue``: start again without it, while at least ``min_clinics`` remain),
the run fails cleanly or goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.errors import ModelError
from analysis.network.clinic import ClinicNode, find_dataset
from analysis.network.engine import NetworkFit, NetworkFitError
from analysis.network.protocol import ClinicLost, InProcess, Transport, run
from analysis.network.spec import Rules, Spec, primary_spec
from analysis.params_schema import Params
from analysis.store import write_json, write_text

MIN_CLINICS = 2


def load_clinics(folders: Sequence[Path]) -> list[tuple[str, pd.DataFrame]]:
    """(label, dataset) per folder; the label is the dataset's own pseudonymous clinic id, else N01, N02..."""
    out = []
    for i, folder in enumerate(folders):
        dataset = pd.read_parquet(find_dataset(folder))
        ids: list[str] = sorted(dataset["clinic_id"].dropna().astype(str).unique()) if "clinic_id" in dataset else []
        out.append((str(ids[0]) if len(ids) == 1 else f"N{i + 1:02d}", dataset))
    labels = [lab for lab, _ in out]
    if len(set(labels)) != len(labels):
        out = [(f"N{i + 1:02d}", ds) for i, (_, ds) in enumerate(out)]
    return out


def network_spec(params: Params) -> Spec:
    return primary_spec(list(params.model.covariates), params.model.primary_week, params.model.alpha)


def fit_network(
    datasets: Sequence[tuple[str, pd.DataFrame]],
    params: Params,
    *,
    make_transport: Callable[[list[ClinicNode]], Transport] = InProcess,
    on_lost: str = "fail",
    say: Callable[[str], None] = print,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """Fit the network model over the clinics; returns the result (raises NetworkFitError / ClinicLost)."""
    spec = network_spec(params)
    rules = Rules.from_min_cell(params.report.min_cell)
    nodes = []
    for label, ds in datasets:
        try:
            node = ClinicNode.from_dataset(
                label,
                ds,
                params.model,
                spec,
                rules,
                say=say,
                log_path=(log_dir / f"{label}.jsonl") if log_dir else None,
            )
        except ModelError as exc:
            raise NetworkFitError(f"{label}: {exc}") from None
        nodes.append(node)
    lost: dict[str, str] = {}
    while True:
        driver = NetworkFit(spec, rules)
        transport = make_transport(nodes)
        t0 = time.perf_counter()
        try:
            rounds = run(driver, transport)
        except ClinicLost as exc:
            for label, why in sorted(exc.problems.items()):
                say(f"network: clinic {label} lost: {why}")
            if on_lost != "continue":
                raise
            lost |= exc.problems
            nodes = [n for n in nodes if n.label not in exc.problems]
            if len(nodes) < MIN_CLINICS:
                raise NetworkFitError(
                    f"fewer than {MIN_CLINICS} clinics remain after losing {', '.join(sorted(lost))}"
                ) from None
            say(f"network: starting again without {', '.join(sorted(exc.problems))} (rule on_lost = continue)")
            continue
        break
    say(f"network: {len(nodes)} clinics, {rounds} rounds, {time.perf_counter() - t0:.1f} s")
    log = getattr(transport, "log", [])
    return network_result(driver.result(), [n.label for n in nodes], lost, log, rounds, type(transport).__name__, spec)


def fit_network_flower(
    folders: Sequence[Path],
    params_file: Path | None,
    *,
    on_lost: str = "fail",
    secure: bool = True,
    say: Callable[[str], None] = print,
    timeout_s: float = 120.0,
    total_timeout_s: float = 900.0,
) -> dict[str, Any]:
    """The same fit over Flower: one SuperNode per clinic folder on 127.0.0.1, SecAgg+ rounds.

    The clinics' labels are announced by the nodes; each node applies its own params' analysis and rules.
    """
    import tempfile

    from analysis.network.flower_local import simulate_federation  # Flower only here
    from analysis.params import load_params

    labels = [label for label, _ in load_clinics(folders)]
    common = {"params": str(params_file.resolve())} if params_file else {}
    nodes = [
        {"node-factory": "analysis.network.clinic:node_from_config", "clinic-dir": str(f.resolve()), "label": lab}
        | common
        for f, lab in zip(folders, labels, strict=True)
    ]
    run_config = common | {
        "on-lost": "drop" if on_lost == "continue" else "stop",
        "min-clinics": MIN_CLINICS,
        # every node must have connected before the handshake: one machine starting 2 processes per clinic
        # needs longer for many clinics (at 50 clinics the default 60 s was not enough on 2 cores)
        "connect-timeout-s": 60.0 + 10.0 * len(folders),
    }
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="outcomes-network-") as tmp:
        out = simulate_federation(
            nodes,
            "analysis.network.engine:driver_from_config",
            run_config,
            Path(tmp) / "result.json",
            secure=secure,
            timeout_s=timeout_s,
            total_timeout_s=total_timeout_s,
        )
    say(f"network: {len(out['clinics'])} clinics over Flower, {out['rounds']} rounds, {time.perf_counter() - t0:.1f} s")
    return flower_result(out, network_spec(load_params(params_file)), secure)


def flower_result(out: dict[str, Any], spec: Spec, secure: bool = True) -> dict[str, Any]:
    """:func:`network_result` from the Flower ServerApp's result file (its log counts bytes each way)."""
    log = [e | {"bytes": int(e.get("bytes_to_clinics", 0)) + int(e.get("bytes_from_clinics", 0))} for e in out["log"]]
    transport = "Flower, SecAgg+" if secure else "Flower, plain"
    return network_result(out["result"], out["clinics"], out["dropped"], log, int(out["rounds"]), transport, spec)


def network_result(
    result: dict[str, Any],
    clinics: Sequence[str],
    lost: dict[str, str],
    log: Sequence[dict[str, Any]],
    rounds: int,
    transport: str,
    spec: Spec,
) -> dict[str, Any]:
    """The driver's numbers with who took part, what was exchanged and the model, as federated.json has them."""
    return result | {
        "clinics": list(clinics),
        "clinics_lost": dict(lost),
        "exchange": {
            "rounds": rounds,
            "values_per_clinic": int(sum(e.get("values", 0) for e in log)),
            "bytes": int(sum(e.get("bytes", 0) for e in log)) or None,
            "transport": transport,
        },
        "model": {
            "formula": spec.formula().replace("y ~", "score ~ clinic +") + " + (week | client)",
            "method": "REML, profiled; Satterthwaite df (lmerTest)",
            "primary_week": spec.primary_week,
        },
    }


def write_outputs(result: dict[str, Any], out: Path, comparison: dict[str, Any] | None = None) -> None:
    """``federated.json`` and ``federated.html`` (atomic writes), only after the fit finished; ``comparison``
    (the demo network) adds the two-stage estimate and the truth to both."""
    from analysis.network.report import render_page

    write_json(out / "federated.json", result | ({"comparison": comparison} if comparison else {}))
    write_text(out / "federated.html", render_page(result, comparison))
