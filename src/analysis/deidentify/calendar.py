"""Calendar facts that survive the per-client date shift: the private sidecar ``calendar.csv``.

Each client's visit dates move by their own keyed offset, so on the de-identified tables "seen in the
last 4 weeks" compares dates that sit on different calendars. At de-identification, while the real
dates are still at hand, ``outcomes deidentify`` writes ``calendar.csv`` beside the tables: one row per
client with the whole weeks from the client's real last visit to the real last visit in the export
(``weeks_since_last_visit``). The therapist page reads it for "active" and "weeks since the last visit";
the real data period comes from ``deidentify_log.json`` at month level.

What it costs: a holder of the tables and the sidecar can line the clients' last visits up on one
calendar (each client's shift is then known relative to the others' to within a week, no longer
independent), and with the export's last month from the log each real last visit to within about a
month. It is therefore written with the tables (a git-ignored ``data/raw/<name>/`` or a folder outside
the project), owner-only (0600), never read by a peer output and never copied into one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

FILENAME = "calendar.csv"
COLUMNS = ["client_id", "weeks_since_last_visit"]


def calendar_frame(client_ids: pd.Series, real_dates: pd.Series) -> pd.DataFrame:
    """One row per client: whole weeks from their real last visit to the real last visit in the export.

    ``client_ids`` and ``real_dates`` (datetimes) are aligned, one entry per visit row. Whole weeks (floor)
    are kept, not days, so the sidecar pins each client's calendar no closer than it needs to.
    """
    last = pd.to_datetime(real_dates).groupby(client_ids.to_numpy(), sort=True).max()
    weeks = ((last.max() - last).dt.days // 7).astype("int64")
    return pd.DataFrame({"client_id": last.index.astype(str), "weeks_since_last_visit": weeks.to_numpy()})


def write_calendar(folder: Path, frame: pd.DataFrame) -> Path:
    """Write ``calendar.csv`` atomically beside the de-identified tables, owner read/write only."""
    from analysis.store import write_csv

    path = Path(folder) / FILENAME
    write_csv(path, frame[COLUMNS], private=True)  # 0600 from the first byte, the temp file too
    return path


def read_calendar(folder: Path) -> pd.Series | None:
    """client_id -> whole weeks since the last visit on the real calendar, or None without a sidecar."""
    path = Path(folder) / FILENAME
    if not path.is_file():
        return None
    table = pd.read_csv(path, dtype={"client_id": str})
    return table.set_index("client_id")["weeks_since_last_visit"].astype("int64")
