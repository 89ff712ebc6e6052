"""The `outcomes` command line: thin wrappers that load, call one stage, write.

Every command reads its settings from ``params.yaml`` (project root, or
``--params``); command-line options override single values. Expected problems
(:class:`~analysis.errors.OutcomesError`) are shown as one line each and give
a non-zero exit code; a traceback is shown only with ``--debug``.

Stage modules are imported inside each command so that ``outcomes --help``
stays fast and no command pays for another's heavy imports: each such import
carries its measured cost (seconds on top of ``import analysis.cli``, which
takes 0.1-0.3 s; measured on a loaded 2-core machine, so read them as relative).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import click
import typer

from analysis.errors import InputError, OutcomesError, ValidationFailed

if TYPE_CHECKING:
    from analysis.params_schema import Params

app = typer.Typer(
    name="outcomes",
    help="Hip-knee outcomes: validate, join, model and report a clinic's session records.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: "--out PATH", not "<path>" / "<list[Path]>" type tags
)


@dataclass
class _State:
    """The root options, for the subcommands (typer passes them to the root callback only)."""

    debug: bool = False
    params: Path | None = None


_STATE = _State()

ParamsOpt = Annotated[
    Path | None, typer.Option("--params", metavar="FILE", help="params.yaml to use (default: project root's).")
]
InputOpt = Annotated[Path | None, typer.Option("--input", "-i", metavar="DIR", help="Folder with the three tables.")]


def _params(path: Path | None = None) -> Params:
    from analysis.params import load_params  # lazy: +0.13 to 0.47 s (pydantic schema), ~60% of --help's imports

    return load_params(path or _STATE.params)


def _echo(text: str) -> None:
    typer.echo(text)


def stderr_progress() -> Callable[[str], None]:
    """A progress callback for long commands: one line per step on stderr, with the elapsed time."""
    t0 = time.perf_counter()

    def say(step: str) -> None:
        print(f"  [{time.perf_counter() - t0:6.1f} s] {step}", file=sys.stderr, flush=True)

    return say


def _version(value: bool) -> None:
    if value:
        typer.echo(f"outcomes (hip-knee-outcomes) {metadata.version('hip-knee-outcomes')}")
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for unexpected errors.")] = False,
    params: ParamsOpt = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    _STATE.debug = debug
    _STATE.params = params


@app.command()
def simulate(
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Folder to write the synthetic clinic to.")
    ] = Path("data/raw/demo"),
    seed: Annotated[int | None, typer.Option(metavar="N", help="Random seed (default: params simulate.seed).")] = None,
    clients: Annotated[int | None, typer.Option(metavar="N", help="Number of clients (default: params).")] = None,
    effect: Annotated[
        float | None, typer.Option(metavar="NUMBER", help="True hip-focus slope effect, NPRS/week.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite tables already in --out (e.g. the demo).")] = False,
) -> None:
    """Generate a synthetic clinic that follows the contract, with its ground truth (truth.json)."""
    from analysis.simulate import run_simulate  # lazy: +1.5 s

    existing = [p.name for p in (out / n for n in ("clients.csv", "sessions.csv", "measurements.csv")) if p.exists()]
    if existing and not force:
        raise InputError(
            f"{out}: already holds {', '.join(existing)}; pass --force to overwrite them, or choose "
            "another --out (the committed demo lives in data/raw/demo)"
        )
    summary = run_simulate(out, _params(), seed=seed, n_clients=clients, effect=effect)
    _echo(summary)


@app.command()
def template(
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Folder for the blank templates.")] = Path(
        "data/templates"
    ),
) -> None:
    """Write blank CSV and XLSX templates of the three tables."""
    from analysis.template import run_template  # lazy: +1.3 s

    for path in run_template(out, _params()):
        _echo(f"wrote {path}")


@app.command()
def validate(input: InputOpt = None) -> None:
    """Check the three tables against the contract; one line per problem."""
    from analysis.validate import run_validate  # lazy: +2.7 s

    _echo(run_validate(_params(), input_dir=input, progress=stderr_progress()))


@app.command()
def join(
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            metavar="DIR",
            help="Folder with the validated tables written by `outcomes validate` (default: params validate.out_dir).",
        ),
    ] = None,
) -> None:
    """Join the validated tables into the long analysis dataset and the exclusion flow."""
    from analysis.join import run_join  # lazy: +1.2 s

    _echo(run_join(_params(), input_dir=input))


@app.command()
def model() -> None:
    """Fit the primary mixed model and every secondary analysis; write reports/results/."""
    from analysis.model.run import run_model  # lazy: +4.0 s

    _echo(run_model(_params(), progress=stderr_progress()))


@app.command()
def report() -> None:
    """Build the therapist's report, the peer report (HTML + PDF) and the findings bundle."""
    from analysis.report.publish import run_report  # lazy: +5.3 s

    _echo(run_report(_params(), progress=stderr_progress()))


@app.command()
def selfcheck(
    clinics: Annotated[int | None, typer.Option(help="Number of simulated clinics (default: params).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: params selfcheck.seed).")] = None,
) -> None:
    """Simulation study: bias, SE, coverage, type-I error and power of the primary estimator."""
    from analysis.model.selfcheck import run_selfcheck  # lazy: +3.9 s

    _echo(run_selfcheck(_params(), n_clinics=clinics, seed=seed))


@app.command()
def sheet(
    client_ids: Annotated[
        list[str], typer.Argument(metavar="CLIENT_ID", help="Client id(s) as in the therapist's report.")
    ],
) -> None:
    """Write a one-page progress sheet (HTML and PDF) per client, to discuss with the client."""
    from analysis.report.sheet import run_sheet  # lazy: +3.8 s

    _echo(run_sheet(_params(), client_ids))


@app.command()
def keygen(
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="FILE", help="Key file to create (keep it outside the repo).")
    ],
) -> None:
    """Create a secret key for de-identification pseudonyms and date shifts."""
    from analysis.deidentify import run_keygen  # lazy: +1.5 s

    _echo(run_keygen(out))


@app.command("signing-key")
def signing_key(
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="FILE", help="Private key file to create (outside the repo).")
    ],
) -> None:
    """Create the clinic's Ed25519 key that signs findings bundles, and FILE.pub for the network lead."""
    from analysis.signing import run_signing_keygen

    _echo(run_signing_keygen(out))


@app.command()
def deidentify(
    export: Annotated[
        list[Path], typer.Argument(metavar="EXPORT", help="Export file(s) from the practice software (CSV/XLSX).")
    ],
    mapping: Annotated[Path, typer.Option("--mapping", "-m", metavar="FILE", help="Mapping file (YAML).")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Folder for the three contract tables.")],
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", metavar="FILE", help="Key file (else $OUTCOMES_KEY or $OUTCOMES_KEY_FILE)."),
    ] = None,
    crosswalk: Annotated[
        Path | None,
        typer.Option(
            "--crosswalk",
            metavar="DIR",
            help="Private folder (outside the project and any git "
            "repository) for crosswalk.csv: pseudonym -> the practice's own record.",
        ),
    ] = None,
    coarsen_dates: Annotated[
        str | None,
        typer.Option(
            "--coarsen-dates",
            metavar="week",
            help="Move every visit date to the Monday of "
            "its week (hides visit patterns; costs within-week detail, see README).",
        ),
    ] = None,
) -> None:
    """Turn a practice-software export into the three contract tables, de-identified."""
    from analysis.deidentify import run_deidentify  # lazy: +1.5 s

    _echo(
        run_deidentify(
            export,
            mapping,
            out,
            key_file=key_file,
            params=_params(),
            crosswalk_dir=crosswalk,
            coarsen=coarsen_dates,
            progress=stderr_progress(),
        )
    )


@app.command("draft-mapping")
def draft_mapping(
    export: Annotated[Path, typer.Argument(metavar="EXPORT", help="An export from the practice software (CSV/XLSX).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="FILE", help="Mapping file to write (default: EXPORT.mapping.yaml)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing mapping file.")] = False,
) -> None:
    """Draft the mapping file for an export: columns, date format and every spelling, guessed and commented."""
    from analysis.contract import load_registry
    from analysis.deidentify.draft import run_draft_mapping
    from analysis.paths import resolve

    registry = load_registry(resolve(_params().data.registry))
    _echo(run_draft_mapping(export, out, registry.keys, force=force))


@app.command()
def lookup(
    text: Annotated[str, typer.Argument(help="A pseudonym (e.g. C3RUWHRA5QWY7) or a value of the practice's record.")],
    crosswalk: Annotated[
        Path, typer.Option("--crosswalk", metavar="DIR", help="The private folder holding crosswalk.csv.")
    ],
) -> None:
    """Key holder only: find a client in the crosswalk, by pseudonym or by the practice's own record."""
    from analysis.crosswalk import lookup as find  # lazy: +0.7 s

    rows = find(crosswalk, text)
    if rows.empty:
        raise InputError(f"{text!r}: not in {crosswalk}/crosswalk.csv (no pseudonym or record value matches)")
    _echo(rows.to_string(index=False))


@app.command("clinic-view")
def clinic_view(
    crosswalk: Annotated[
        Path, typer.Option("--crosswalk", metavar="DIR", help="The key holder's folder holding crosswalk.csv.")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", metavar="PRIVATE_DIR", help="A private folder outside the project and any git repository."
        ),
    ],
    sheets: Annotated[
        str,
        typer.Option(
            "--sheets",
            help="Progress sheets to write: active (worklist, seen lately), worklist (default), all or none.",
        ),
    ] = "worklist",
) -> None:
    """Key holder only: the therapist page and progress sheets with real dates and the practice's references."""
    from analysis.clinic_view import run_clinic_view

    _echo(run_clinic_view(_params(), crosswalk, out, sheets))


@app.command()
def pool(
    bundles: Annotated[
        list[Path], typer.Argument(metavar="BUNDLE", help="Findings bundles (findings.json) of the clinics to pool.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Folder for pooled.json, forest.svg, pooled.html/.pdf.")
    ],
    registry: Annotated[
        Path | None,
        typer.Option("--registry", metavar="FILE", help="The network's clinics.yaml: clinic id -> public key."),
    ] = None,
    allow_unsigned: Annotated[
        bool, typer.Option("--allow-unsigned", help="Pool without a registry; the report says: not authenticated.")
    ] = False,
    min_cell: Annotated[
        int | None, typer.Option("--min-cell", metavar="N", help="Smallest count shown (default params; >= 5).")
    ] = None,
    tau2: Annotated[str, typer.Option("--tau2", help="Between-clinic variance estimator: REML, PM or DL.")] = "REML",
    ci: Annotated[
        str, typer.Option("--ci", help="Pooled CI: knha_modified (default), knha (Knapp-Hartung) or z.")
    ] = "knha_modified",
) -> None:
    """Pool clinics' findings bundles by random-effects meta-analysis.

    Only bundles signed by a clinic in --registry are pooled. Every bundle is checked first; on any
    problem nothing is written.
    """
    from analysis.pool.meta import CI_METHODS, TAU2_METHODS  # lazy, as run_pool below
    from analysis.pool.run import run_pool  # lazy: +5.5 s

    if tau2.upper() not in TAU2_METHODS:
        raise typer.BadParameter(f"must be one of {', '.join(TAU2_METHODS)}", param_hint="--tau2")
    if ci not in CI_METHODS:
        raise typer.BadParameter(f"must be one of {', '.join(CI_METHODS)}", param_hint="--ci")
    cell = min_cell if min_cell is not None else _params().report.min_cell
    _echo(
        run_pool(
            bundles,
            out,
            registry=registry,
            allow_unsigned=allow_unsigned,
            min_cell=cell,
            tau2_method=tau2.upper(),
            ci_method=ci,
            progress=stderr_progress(),
        )
    )


from analysis.network.commands import network_app  # noqa: E402 - typer sub-app; its commands import lazily

app.add_typer(network_app, name="network")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning expected errors into clear lines and exit codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    # typer >= 0.16 vendors click: catch its exception classes as well as click's own
    usage_errors: tuple[type[click.ClickException], ...] = tuple(
        {click.ClickException, *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")}
    )
    try:
        app(args=args, prog_name="outcomes", standalone_mode=False)
    except (click.exceptions.Exit, typer.Exit) as exc:
        return int(exc.exit_code)
    except usage_errors as exc:
        exc.show()  # click's own message, with its "Did you mean" suggestion
        return exc.exit_code
    except (click.exceptions.Abort, typer.Abort):
        typer.echo("aborted", err=True)
        return 130
    except ValidationFailed as exc:
        for problem in exc.problems:
            typer.echo(problem.line(), err=True)
        typer.echo(f"{len(exc.problems)} problem(s); nothing was changed in the input folder.", err=True)
        return exc.exit_code
    except OutcomesError as exc:
        if debug:
            raise
        for line in str(exc).splitlines() or [""]:
            typer.echo(f"error: {line}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("interrupted; outputs are written atomically, so earlier outputs are intact", err=True)
        return 130
    except OSError as exc:  # a file operation outside analysis.store (which maps its own): still one line
        if debug:
            raise
        from analysis.store import oserror_advice

        typer.echo(f"error: {exc.filename or 'a file'}: {oserror_advice(exc)}", err=True)
        return OutcomesError.exit_code
    except Exception as exc:  # last line of defence: no traceback for users
        if debug:
            raise
        typer.echo(
            f"internal error: {exc.__class__.__name__}: {exc} (please report it; rerun with --debug for details)",
            err=True,
        )
        return 3
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
