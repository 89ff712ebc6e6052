"""The clinic's own pages with real dates: ``outcomes clinic-view --crosswalk DIR --out PRIVATE_DIR``.

The pipeline only ever sees shifted dates and pseudonyms. The key holder's crosswalk (:mod:`analysis.crosswalk`:
pseudonym -> the practice's own identity values and each client's date shift) turns them back: this
command rebuilds the therapist page and the progress sheets with real visit dates and the practice's own
patient reference, and writes them to a private folder outside the project and every git work tree
(the crosswalk's rules: owner-only 0700/0600). Nothing in ``reports/`` changes, and no peer output is
built here: peers never see a real date.

With ``--coarsen-dates week`` at de-identification, real dates are exact only to the week.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from analysis.crosswalk import FILENAME, check_private_dir
from analysis.errors import InputError
from analysis.params_schema import Params
from analysis.paths import project_root, resolve
from analysis.report import provenance as prov
from analysis.report.build import build_therapist, therapist_clients
from analysis.report.context import common_context
from analysis.report.inputs import load_report_inputs
from analysis.report.sheet import write_sheets
from analysis.report.worklist import clients_csv
from analysis.store import private_dir, write_csv, write_text

#: crosswalk columns that are not the practice's identity values
NOT_IDENTITY = {"client_id", "first_visit_real", "last_visit_real", "date_shift_days"}
SHEETS = ("active", "worklist", "all", "none")


def real_dates(dataset: pd.DataFrame, shifts: pd.Series) -> pd.DataFrame:
    """The dataset with every session date moved back by its client's shift (client_id -> days added).

    Raises InputError when a client has no shift in the crosswalk (another key, or another export).
    """
    missing = sorted(set(dataset["client_id"].astype(str)) - set(shifts.index.astype(str)))
    if missing:
        raise InputError(
            f"{len(missing)} client(s) of the analysis dataset (e.g. {missing[0]}) are not in the crosswalk; "
            "pass the crosswalk folder of the de-identification that made this data"
        )
    days = dataset["client_id"].astype(str).map(shifts).astype("int64")
    return dataset.assign(session_date=pd.to_datetime(dataset["session_date"]) - pd.to_timedelta(days, unit="D"))


def references(crosswalk: pd.DataFrame) -> dict[str, str]:
    """client_id -> the practice's own reference: the identity values as exported, joined by " · "."""
    cols = [c for c in crosswalk.columns if c not in NOT_IDENTITY]
    return {
        str(row["client_id"]): " · ".join(str(row[c]) for c in cols if str(row[c]).strip())
        for row in crosswalk.to_dict("records")
    }


def read_crosswalk(folder: Path) -> pd.DataFrame:
    """The key holder's ``crosswalk.csv`` (strings), checked to have the pseudonym and the shift."""
    path = Path(folder).expanduser() / FILENAME
    if not path.is_file():
        raise InputError(f"{path}: no crosswalk here; it is written by `outcomes deidentify ... --crosswalk DIR`")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not {"client_id", "date_shift_days"} <= set(table.columns):
        raise InputError(f"{path}: needs the columns client_id and date_shift_days (written by outcomes deidentify)")
    return table


def run_clinic_view(params: Params, crosswalk_dir: Path, out_dir: Path, sheets: str = "worklist") -> str:
    """I/O edge: read the pipeline's outputs and the crosswalk, write the real-date pages to ``out_dir``."""
    if sheets not in SHEETS:
        raise InputError(f"--sheets {sheets!r}: choose one of {', '.join(SHEETS)}")
    root = project_root()
    out = check_private_dir(out_dir, root)
    walk = read_crosswalk(crosswalk_dir)
    shifts = walk.set_index("client_id")["date_shift_days"]
    if (shifts == "").any():
        raise InputError(f"{crosswalk_dir}/{FILENAME}: some rows have no date_shift_days; de-identify again")
    inp, read = load_report_inputs(params, root)
    real = dataclasses.replace(
        inp,
        dataset=real_dates(inp.dataset, shifts.astype("int64")),
        shift_max_days=0,
        since_last=None,  # the real dates themselves now say how long ago each visit was
        true_period=None,
    )
    refs = references(walk)
    c = common_context(real, prov.collect(params, root, read))
    clients = therapist_clients(real, c)
    # the "new" marks of the last report build (its own history has moved on since)
    built = resolve(params.report.therapist_dir, root) / "clients.csv"
    if built.is_file():
        marks = pd.read_csv(built, dtype=str, keep_default_na=False).set_index("pseudonym")["new_since_last_report"]
        clients = clients.assign(new=[marks.get(str(x), "False") == "True" for x in clients["client_id"]])
    html = build_therapist(real, c, clients, references=refs)
    private_dir(out)
    table = clients_csv(clients).assign(practice_reference=[refs.get(str(x), "") for x in clients["client_id"]])
    # real dates and the practice's references: owner-only from the first byte
    write_text(out / "index.html", html, private=True)
    write_csv(out / "clients.csv", table, private=True)
    write_csv(out / "worklist.csv", table[table["on_worklist"]], private=True)
    chosen = {
        "active": clients.loc[clients["on_worklist"] & clients["active"], "client_id"],
        "worklist": clients.loc[clients["on_worklist"], "client_id"],
        "all": clients["client_id"],
    }
    ids = [str(x) for x in chosen.get(sheets, pd.Series(dtype=str))]
    written = (
        write_sheets(real.dataset, real.registry, params, ids, out / "sheets", refs, real.tables.get("expected"))
        if ids
        else []
    )
    return (
        f"wrote {out / 'index.html'}, clients.csv and worklist.csv with real dates and the practice's references, "
        f"and {len(written)} progress sheet(s) in {out / 'sheets'} (key holder only; never share this folder)"
    )
