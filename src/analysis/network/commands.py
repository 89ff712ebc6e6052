"""``outcomes network ...``: thin commands over :mod:`analysis.network.run`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

network_app = typer.Typer(
    help="The clinic network: one mixed model over every clinic's records, without a record leaving its clinic.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

TRANSPORTS = ("flower", "in-process")


@network_app.command("simulate")
def simulate(
    clinics: Annotated[
        list[Path], typer.Argument(metavar="CLINIC_DIR", help="Each clinic's folder with its joined analysis.parquet.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Folder for federated.json and federated.html.")
    ],
    transport: Annotated[
        str, typer.Option("--transport", help="flower (real nodes on 127.0.0.1, SecAgg+) or in-process.")
    ] = "flower",
    on_lost: Annotated[
        str, typer.Option("--on-lost", help="A clinic lost mid-fit: fail (default) or continue without it.")
    ] = "fail",
    params_file: Annotated[Path | None, typer.Option("--params", metavar="FILE", help="params.yaml to use.")] = None,
) -> None:
    """Run a whole federation on this machine: a lead and one node per CLINIC_DIR; write the network fit."""
    from analysis.errors import OutcomesError
    from analysis.network.engine import NetworkFitError
    from analysis.network.protocol import ClinicLost
    from analysis.network.run import fit_network, load_clinics, write_outputs
    from analysis.params import load_params

    if transport not in TRANSPORTS:
        raise typer.BadParameter(f"{transport!r}: choose one of {', '.join(TRANSPORTS)}", param_hint="--transport")
    if on_lost not in ("fail", "continue"):
        raise typer.BadParameter(f"{on_lost!r}: choose fail or continue", param_hint="--on-lost")
    if len(clinics) < 2:
        raise typer.BadParameter("a network needs at least two clinics", param_hint="CLINIC_DIR")
    params = load_params(params_file)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        if transport == "flower":
            from analysis.network.run import fit_network_flower  # Flower only here

            result = fit_network_flower(clinics, params_file, on_lost=on_lost, say=say)
        else:
            result = fit_network(load_clinics(clinics), params, on_lost=on_lost, say=say)
    except ClinicLost as exc:
        raise NetworkFitError(
            "\n".join(f"clinic {k}: {v}" for k, v in sorted(exc.problems.items())) + "\nnothing was written"
        ) from None
    except OutcomesError:
        raise
    write_outputs(result, out)
    status = "ok" if result["status"] == "ok" else f"failed: {result['reason']}"
    typer.echo(
        f"network fit {status}: {len(result['clinics'])} clinics, {result['exchange']['rounds']} rounds"
        + (
            f"; difference in change {result['estimate']:+.2f} [{result['ci_low']:+.2f}, {result['ci_high']:+.2f}]"
            if result["status"] == "ok"
            else ""
        )
        + f" -> {out / 'federated.json'}"
    )


NODE_FACTORY = "analysis.network.clinic:node_from_config"
DRIVER_FACTORY = "analysis.network.engine:driver_from_config"


def _toml(value: object) -> str:
    """A string as a TOML basic string, for ``--node-config`` (JSON's escapes are TOML's)."""
    import json

    return json.dumps(str(value))


@network_app.command("node")
def node(
    clinic_dir: Annotated[
        Path, typer.Argument(metavar="CLINIC_DIR", help="The clinic's folder with its analysis.parquet.")
    ],
    lead: Annotated[str, typer.Option("--lead", metavar="HOST:PORT", help="The network lead's SuperLink.")],
    ca: Annotated[Path, typer.Option("--ca", metavar="FILE", help="The network's CA certificate (ca.crt).")],
    key: Annotated[
        Path, typer.Option("--key", metavar="FILE", help="This clinic's private key (registered at the lead).")
    ],
    label: Annotated[str | None, typer.Option("--label", help="The label this clinic announces.")] = None,
    params_file: Annotated[Path | None, typer.Option("--params", metavar="FILE", help="params.yaml to use.")] = None,
    log: Annotated[Path | None, typer.Option("--log", metavar="FILE", help="This clinic's log of every round.")] = None,
    dry_run: Annotated[bool, typer.Option("--print", help="Print the Flower command instead of running it.")] = False,
) -> None:
    """Run this clinic's node: a Flower SuperNode over TLS with node authentication, answering from CLINIC_DIR."""
    import os
    import shlex

    from analysis.network.clinic import find_dataset

    find_dataset(clinic_dir)  # a clear error now, not at the first round
    if ":" not in lead:
        raise typer.BadParameter(f"{lead!r}: give the lead's address as HOST:PORT", param_hint="--lead")
    for path, hint in ((ca, "--ca"), (key, "--key")):
        if not path.is_file():
            raise typer.BadParameter(f"{path} does not exist", param_hint=hint)
    if key.stat().st_mode & 0o077:
        raise typer.BadParameter(f"{key} can be read by others: chmod 600 it first", param_hint="--key")
    config = {"node-factory": NODE_FACTORY, "clinic-dir": str(clinic_dir.resolve())}
    config |= {"label": label} if label else {}
    config |= {"params": str(params_file.resolve())} if params_file else {}
    config |= {"log": str(log.resolve())} if log else {}
    argv = ["flower-supernode", "--superlink", lead, "--root-certificates", str(ca.resolve())]
    argv += ["--auth-supernode-private-key", str(key.resolve())]
    argv += ["--node-config", " ".join(f"{k}={_toml(v)}" for k, v in config.items())]
    if dry_run:
        typer.echo(shlex.join(argv))
        return
    os.execvp(argv[0], argv)


@network_app.command("lead")
def lead(
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Folder for the run's result and the page.")],
    clinics: Annotated[int, typer.Option("--clinics", help="How many clinics' nodes to wait for.")],
    superlink: Annotated[
        str, typer.Option("--superlink", metavar="NAME", help="The SuperLink's name in $FLWR_HOME/config.toml.")
    ] = "network",
    on_lost: Annotated[
        str, typer.Option("--on-lost", help="stop (default) or drop a lost clinic and start again.")
    ] = "stop",
    min_clinics: Annotated[int, typer.Option("--min-clinics", help="With drop: never go on with fewer.")] = 3,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds a clinic may take to answer a round.")] = 300.0,
    params_file: Annotated[Path | None, typer.Option("--params", metavar="FILE", help="params.yaml to use.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--print", help="Write the Flower App, print the command, run nothing.")
    ] = False,
) -> None:
    """Run the network fit as its lead: submit the Flower App to the SuperLink, then write federated.json/html."""
    import json
    import shlex
    import subprocess

    from analysis.network.flower_local import app_pyproject
    from analysis.network.run import flower_result, network_spec, write_outputs
    from analysis.params import load_params
    from analysis.store import make_dirs, write_text

    if on_lost not in ("stop", "drop"):
        raise typer.BadParameter(f"{on_lost!r}: choose stop or drop", param_hint="--on-lost")
    if clinics < 2:
        raise typer.BadParameter("a network needs at least two clinics", param_hint="--clinics")
    out = out.resolve()
    app = out / "flower-app"
    make_dirs(app, private=False)
    run_file = out / "run.json"
    cfg: dict[str, object] = {
        "driver-factory": DRIVER_FACTORY,
        "out": str(run_file),
        "clinics": clinics,
        "secure": True,
        "timeout-s": float(timeout),
        "connect-timeout-s": 600.0,
        "poll-s": 0.5,
        "on-lost": on_lost,
        "min-clinics": min_clinics,
    }
    cfg |= {"params": str(params_file.resolve())} if params_file else {}
    write_text(app / "pyproject.toml", app_pyproject(cfg))
    argv = ["flwr", "run", str(app), superlink, "--stream"]
    if dry_run:
        typer.echo(shlex.join(argv))
        return
    subprocess.run(argv, check=False)
    if not run_file.is_file():
        from analysis.network.engine import NetworkFitError

        raise NetworkFitError(f"the run wrote no result (see {run_file.name}.lost.json or the SuperLink's log)")
    raw = json.loads(run_file.read_text(encoding="utf-8"))
    write_outputs(flower_result(raw, network_spec(load_params(params_file))), out)
    typer.echo(f"network fit written -> {out / 'federated.json'}")
