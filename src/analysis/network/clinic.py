"""A clinic's node: answers the network's requests from its own analysis dataset, or refuses.

The node reads the clinic's joined analysis dataset (``outcomes join``'s output, never raw records),
selects the primary model's data exactly as the clinic's own analysis does
(:func:`analysis.model.prepare.primary_data`), recodes the categorical covariates to the network's
harmonised levels and builds the model's per-client sufficient statistics once. Each answer is a sum
over its clients (:mod:`.pieces`); the node logs every round it answers (round, kind, number of thetas,
number of values) and refuses, with a one-line reason on its own console, any request that breaks
:class:`analysis.network.spec.Rules` or changes the analysis it accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import ModelError
from analysis.model.lmm import design as dz
from analysis.model.prepare import primary_data
from analysis.network import pieces as pz
from analysis.network.protocol import Refusal, Request
from analysis.network.spec import N_THETA, Rules, Spec
from analysis.params_schema import ModelParams

DATASET_NAMES = ("analysis.parquet", "processed/analysis.parquet", "data/processed/analysis.parquet")


def find_dataset(folder: Path) -> Path:
    """The clinic's analysis dataset inside ``folder`` (the file itself, or a project folder)."""
    for name in DATASET_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise ModelError(
        f"{folder.name}: no analysis dataset (looked for {' and '.join(DATASET_NAMES)}); "
        "run `outcomes validate` and `outcomes join` on the clinic's de-identified tables first"
    )


def node_from_config(config: dict[str, Any]) -> ClinicNode:
    """A clinic's node from its Flower node config (``clinic-dir``; optional ``label``, ``params``, ``log``).

    The analysis the clinic accepts is its own ``params.yaml``'s primary model (``params`` or the project's):
    a lead asking for any other is refused. The label is the one given, else the dataset's clinic id.
    """
    from analysis.network.spec import primary_spec
    from analysis.params import load_params

    params = load_params(Path(str(config["params"]))) if config.get("params") else load_params()
    folder = Path(str(config["clinic-dir"]))
    dataset = pd.read_parquet(find_dataset(folder))
    label = str(config.get("label") or dataset["clinic_id"].dropna().astype(str).iloc[0])
    spec = primary_spec(list(params.model.covariates), params.model.primary_week, params.model.alpha)
    rules = Rules.from_min_cell(params.report.min_cell)
    log = Path(str(config["log"])) if config.get("log") else None
    node = ClinicNode.from_dataset(label, dataset, params.model, spec, rules, log_path=log)
    node.accepted = spec.key()
    return node


def network_frame(dataset: pd.DataFrame, cfg: ModelParams, spec: Spec) -> pd.DataFrame:
    """The primary model's rows with the network's harmonised categorical levels."""
    data = primary_data(dataset, cfg).data.copy()
    for name, levels in spec.levels.items():
        values = data[name].astype(str)
        unknown = sorted(set(values) - set(levels))
        if unknown:
            raise ModelError(f"covariate {name} has values outside the network's levels: {', '.join(unknown)}")
        data[name] = pd.Categorical(values, categories=levels)
    return data


class ClinicNode:
    """One clinic's side of the network (:class:`analysis.network.protocol.Node`)."""

    def __init__(
        self,
        label: str,
        frame: pd.DataFrame,
        rules: Rules,
        say: Callable[[str], None] = print,
        log_path: Path | None = None,
    ) -> None:
        self.label = label
        self.frame = frame
        self.rules = rules
        self.say = say
        self.log_path = log_path
        self.n_clients = int(frame["client_id"].nunique())
        self.accepted: str | None = None
        self.rounds = 0
        self._designs: dict[tuple[str, ...], dz.Design] = {}

    @classmethod
    def from_dataset(
        cls, label: str, dataset: pd.DataFrame, cfg: ModelParams, spec: Spec, rules: Rules, **kwargs: Any
    ) -> ClinicNode:
        return cls(label, network_frame(dataset, cfg, spec), rules, **kwargs)

    def hello(self, run: dict[str, Any]) -> None:
        """The handshake: refuse the whole run at once when the clinic is below the disclosure threshold."""
        if self.n_clients < self.rules.min_clients:
            reason = (
                f"{self.n_clients} analysable clients, fewer than the minimum of {self.rules.min_clients} "
                "(disclosure rule min_clients)"
            )
            self.say(f"{self.label}: refused the run: {reason}")
            raise Refusal(reason)

    def snapshot(self) -> dict[str, Any]:
        """What the node must remember between requests (Flower rebuilds it for every message)."""
        return {"rounds": self.rounds, "accepted": self.accepted or ""}

    def restore(self, state: dict[str, Any]) -> None:
        self.rounds = int(state.get("rounds", 0))
        self.accepted = str(state.get("accepted") or "") or self.accepted

    # ------------------------------------------------------------------ answering
    def answer(self, request: Request) -> np.ndarray:
        try:
            vec = self._answer(request)
        except Refusal as exc:
            self.say(f"{self.label}: refused round {request.round}: {exc.reason}")
            self._log(request, refused=exc.reason)
            raise
        self._log(request, values=int(vec.size))
        return vec

    def _answer(self, request: Request) -> np.ndarray:
        spec = Spec.from_json(request.spec)
        self._check(request, spec)
        design = self._design(spec)
        if request.kind == "summary":
            return summary_vector(design, self.frame, spec)
        thetas = np.atleast_2d(np.asarray(request.thetas, dtype=float))
        out = []
        for theta in thetas:
            try:
                out.append(pz.pack(pz.clinic_pieces(design, theta)))
            except np.linalg.LinAlgError as exc:
                raise Refusal(f"cannot evaluate theta {np.round(theta, 6).tolist()}: {exc}") from None
        return np.concatenate(out)

    def _check(self, request: Request, spec: Spec) -> None:
        r = self.rules
        if self.n_clients < r.min_clients:
            raise Refusal(
                f"{self.n_clients} analysable clients, fewer than the minimum of {r.min_clients} "
                "(disclosure rule min_clients)"
            )
        if self.accepted is None:
            self.accepted = spec.key()
        elif spec.key() != self.accepted:
            raise Refusal("the request changes the analysis this clinic accepted in round 0")
        self.rounds += 1
        if self.rounds > r.max_rounds:
            raise Refusal(f"more than {r.max_rounds} rounds requested (disclosure rule max_rounds)")
        if request.kind == "summary":
            return
        if request.kind != "pieces":
            raise Refusal(f"unknown request kind {request.kind!r}")
        if spec.columns is None:
            raise Refusal("a pieces request without the kept columns")
        thetas = np.atleast_2d(np.asarray(request.thetas, dtype=float))
        if thetas.shape[1] != N_THETA or not 1 <= thetas.shape[0] <= r.max_thetas:
            raise Refusal(f"thetas of shape {thetas.shape}: expected 1 to {r.max_thetas} rows of {N_THETA}")
        if not np.all(np.isfinite(thetas)) or np.any(thetas[:, [0, 2]] < 0) or np.any(np.abs(thetas) > 1e3):
            raise Refusal("thetas outside the parameter space (non-finite, negative standard deviation or > 1e3)")

    def _design(self, spec: Spec) -> dz.Design:
        key = tuple(spec.columns or ())
        if key not in self._designs:
            full = dz.from_formula(self.frame, spec.formula(), spec.groups, spec.re_formula)
            if spec.columns is None:
                self._designs[key] = full
            else:
                missing = [c for c in spec.columns if c not in full.fixed_names]
                if missing:
                    raise Refusal(f"the request names columns this analysis does not have: {', '.join(missing)}")
                keep = [0] + [full.fixed_names.index(c) for c in spec.columns]
                self._designs[key] = dz.select_columns(full, keep)
        return self._designs[key]

    def _log(self, request: Request, **fields: Any) -> None:
        if self.log_path is None:
            return
        entry = {"round": request.round, "kind": request.kind, "thetas": int(np.atleast_2d(request.thetas).shape[0])}
        with self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry | fields, sort_keys=True) + "\n")


def summary_vector(d: dz.Design, frame: pd.DataFrame, spec: Spec) -> np.ndarray:
    """Round 0: ``[1 (clinics), clients, observations, clients with a non-zero value per common column,
    X'X of the common columns within the clinic (centred at its own mean), flattened]``."""
    X = d.X[:, 1:]
    groups = d.group_codes
    nonzero = np.zeros((d.n_groups, X.shape[1]), dtype=bool)
    np.logical_or.at(nonzero, groups, X != 0)
    Xc = X - X.mean(axis=0)
    return np.concatenate(
        [[1.0, float(d.n_groups), float(d.n_obs)], nonzero.sum(axis=0).astype(float), (Xc.T @ Xc).ravel()]
    )
