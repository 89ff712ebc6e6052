"""A demo network: simulated clinics of different sizes and true effects, each run through the whole
pipeline in its own folder, then pooled (``make pool-demo``; ``python -m analysis.pool.demo --out DIR``).

Each clinic's true slope difference is drawn around the generator's (params ``simulate.hip_slope_effect``)
with a between-clinic SD (``--tau``), so the network has real heterogeneity. Every clinic runs
validate -> join -> model -> report exactly as ``dvc repro`` does, with every path pointing into
``DIR/<clinic>/``, and its findings bundle is signed and pooled into ``DIR/pooled/`` against the network's
registry ``DIR/clinics.yaml``. ``DIR/network.json`` records the generating truth beside the pooled estimate.

The demo clinics' signing keys are derived from the seed (so the demo is reproducible) and live only in a
temporary folder outside the project while it runs: they are demo keys, never a clinic's real key.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from analysis import signing
from analysis.join import run_join
from analysis.model.run import run_model
from analysis.network.run import fit_network, load_clinics, write_outputs
from analysis.params import load_params, with_updates
from analysis.params_schema import Params
from analysis.pool.run import run_pool
from analysis.report.publish import run_report
from analysis.simulate import run_simulate
from analysis.store import write_json, write_text
from analysis.validate import run_validate

SIZES = (40, 70, 110, 160, 240, 380)
#: solo practices: too small to fit the random-slope model alone, so they send no findings bundle and two-stage
#: pooling leaves them out; the one-stage network model (analysis.network) uses their records
SOLO_SIZES = (12, 18, 24, 30)


def plan(
    n_clinics: int, mean_effect: float, tau: float, seed: int, sizes: Sequence[int] = SIZES
) -> list[dict[str, Any]]:
    """The network: name, clients, true slope difference and seed of every clinic (reproducible)."""
    rng = np.random.default_rng(seed)
    effects = mean_effect + tau * rng.standard_normal(n_clinics)
    seeds = rng.integers(0, 2**31 - 1, n_clinics)
    return [
        {
            "clinic": f"clinic-{chr(ord('a') + i)}",
            "n_clients": int(sizes[i % len(sizes)]),
            "effect": float(effects[i]),
            "seed": int(seeds[i]),
        }
        for i in range(n_clinics)
    ]


def clinic_params(params: Params, folder: Path, name: str) -> Params:
    """The pipeline's params with every output (and the input) inside ``folder``."""
    return with_updates(
        params,
        {
            "data": {"input": str(folder / "data")},
            "validate": {"out_dir": str(folder / "interim"), "report_dir": str(folder / "validation")},
            "join": {
                "out": str(folder / "processed" / "analysis.parquet"),
                "flow": str(folder / "processed" / "flow.csv"),
            },
            "model": {"out_dir": str(folder / "results")},
            "report": {
                "therapist_dir": str(folder / "therapist"),
                "peer_dir": str(folder / "peer"),
                "clinic_id": name,
                "clinic_label": f"Demo network, {name} (synthetic)",
            },
            "simulate": {"clinic_id": name},
        },
    )


def demo_key(seed: int, clinic: str) -> Ed25519PrivateKey:
    """A demo clinic's signing key, derived from the network seed: reproducible, and public, so demo only."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"demo network {seed} {clinic}".encode()).digest())


def registry_doc(keys: dict[str, Ed25519PrivateKey]) -> dict[str, Any]:
    """The network lead's clinics.yaml for these clinics."""
    return {
        "clinics": {
            c: {"public_key": signing.public_text(signing.raw_public(k)), "label": f"Demo {c}"}
            for c, k in sorted(keys.items())
        }
    }


def run_network(
    out: Path,
    params: Params,
    *,
    n_clinics: int = 6,
    tau: float = 0.05,
    seed: int = 20261124,
    sizes: Sequence[int] = SIZES,
    solo_sizes: Sequence[int] = SOLO_SIZES,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Simulate, run and pool the network, and fit it one-stage; returns the truth and both estimates."""
    mean_effect = float(params.simulate["hip_slope_effect"])
    week = params.model.primary_week
    network = plan(n_clinics, mean_effect, tau, seed, sizes)
    solo = (
        [
            c | {"clinic": f"solo-{i + 1}"}
            for i, c in enumerate(plan(len(solo_sizes), mean_effect, tau, seed + 1, solo_sizes))
        ]
        if solo_sizes
        else []
    )
    bundles = []
    keys = {c["clinic"]: demo_key(seed, c["clinic"]) for c in network}
    with tempfile.TemporaryDirectory(prefix="outcomes-demo-keys-") as key_dir:
        for c in network:
            folder = out / c["clinic"]
            key_file = Path(key_dir) / f"{c['clinic']}.key"
            p = with_updates(clinic_params(params, folder, c["clinic"]), {"report": {"signing_key": str(key_file)}})
            signing.write_private_key(key_file, keys[c["clinic"]])
            say(f"{c['clinic']}: {c['n_clients']} clients, true slope difference {c['effect']:+.3f}/week")
            run_simulate(folder / "data", p, seed=c["seed"], n_clients=c["n_clients"], effect=c["effect"])
            for stage in (run_validate, run_join, run_model, run_report):
                stage(p)
            bundles.append(folder / "peer" / "findings.json")
    for c in solo:
        p = clinic_params(params, out / c["clinic"], c["clinic"])
        say(
            f"{c['clinic']}: {c['n_clients']} clients (solo practice, no bundle), "
            f"true slope difference {c['effect']:+.3f}/week"
        )
        run_simulate(out / c["clinic"] / "data", p, seed=c["seed"], n_clients=c["n_clients"], effect=c["effect"])
        run_validate(p)
        run_join(p)
    write_text(out / "clinics.yaml", yaml.safe_dump(registry_doc(keys), sort_keys=True))
    min_cell = params.report.min_cell
    say(run_pool(bundles, out / "pooled", registry=out / "clinics.yaml", min_cell=min_cell))
    pooled = json.loads((out / "pooled" / "pooled.json").read_text(encoding="utf-8"))["primary"]
    truth = {
        "mean_change_difference": week * mean_effect,
        "clinics_mean_change_difference": float(week * np.mean([c["effect"] for c in network])),
        "between_clinic_sd_change": week * tau,
    }
    one = one_stage(out, params, [c["clinic"] for c in network + solo], say)
    two_stage_clinics = int(pooled.get("k", len(network)))
    all_effects = [c["effect"] for c in network + solo]
    truth["all_clinics_mean_change_difference"] = float(week * np.mean(all_effects))
    comparison: dict[str, Any] = {
        "one_stage": {k: one[k] for k in ("estimate", "ci_low", "ci_high")} | {"clinics": len(one["clinics"])},
        "two_stage": {k: pooled["pooled"][k] for k in ("estimate", "ci_low", "ci_high")}
        | {"clinics": two_stage_clinics},
        "truth": truth["mean_change_difference"],
        "note": (
            f"The {len(solo)} solo practices ({', '.join(str(c['n_clients']) for c in solo)} clients) send no findings "
            "bundle (too small to fit the model alone), so two-stage pooling leaves them out; the one-stage model uses "
            "their records. The truth is the simulation's generating mean; clinics' own true effects vary around it."
        ),
    }
    write_outputs(one, out / "federated", comparison)
    result = {
        "one_stage": comparison["one_stage"] | {"se": one["se"], "df": one["df"], "rounds": one["exchange"]["rounds"]},
        "solo_clinics": [{**c, "true_change_difference": week * c["effect"]} for c in solo],
        "clinics": [{**c, "true_change_difference": week * c["effect"]} for c in network],
        "truth": truth,
        "pooled": {k: pooled["pooled"][k] for k in ("estimate", "se", "ci_low", "ci_high")}
        | {
            "pi_low": pooled["prediction"]["pi_low"],
            "pi_high": pooled["prediction"]["pi_high"],
            "tau": pooled["tau"],
            "tau2_method": pooled["tau2_method_used"],
        },
        "covered": bool(pooled["pooled"]["ci_low"] <= truth["mean_change_difference"] <= pooled["pooled"]["ci_high"]),
    }
    write_json(out / "network.json", result)
    return result


def one_stage(out: Path, params: Params, clinics: Sequence[str], say: Callable[[str], None]) -> dict[str, Any]:
    """The one-stage network fit over every clinic's joined records (in-process transport: the demo's clinics
    share this machine; ``outcomes network simulate`` runs the same over Flower)."""
    datasets = load_clinics([out / c for c in clinics])
    return fit_network(datasets, params, say=say)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("reports/network"))
    ap.add_argument("--clinics", type=int, default=6)
    ap.add_argument("--tau", type=float, default=0.05, help="between-clinic SD of the true slope difference")
    ap.add_argument("--seed", type=int, default=20261124)
    args = ap.parse_args(argv)
    r = run_network(args.out.resolve(), load_params(), n_clinics=args.clinics, tau=args.tau, seed=args.seed)
    t, p = r["truth"], r["pooled"]
    print(
        f"\ngenerating mean change difference {t['mean_change_difference']:.3f} (these clinics' mean "
        f"{t['clinics_mean_change_difference']:.3f}, between-clinic SD {t['between_clinic_sd_change']:.3f}); "
        f"pooled {p['estimate']:.3f} (95% CI {p['ci_low']:.3f} to {p['ci_high']:.3f}; tau {p['tau']:.3f}) -> "
        f"{'covers' if r['covered'] else 'MISSES'} the generating mean"
    )
    o = r["one_stage"]
    print(
        f"one-stage network model over {o['clinics']} clinics (solo practices included): {o['estimate']:.3f} "
        f"(95% CI {o['ci_low']:.3f} to {o['ci_high']:.3f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
