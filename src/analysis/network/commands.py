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
