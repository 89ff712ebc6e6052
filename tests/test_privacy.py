"""Privacy: identifier scan, peer-output gate, small-cell suppression, k-anonymity."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from analysis.errors import PrivacyError
from analysis.privacy import (
    assert_peer_safe,
    check_peer_output,
    is_count_key,
    k_anonymity,
    looks_identifying,
    scan_values,
    suppress_count,
    suppress_table,
)

# ----------------------------------------------------------------------------- scan_values

IDENTIFYING = [
    ("jane.doe@example.com", "email"),
    ("Contact: JOE@EXAMPLE.ORG", "email"),
    ("07700 900123", "phone"),
    ("+44 7700 900123", "phone"),
    ("07700900123", "phone"),
    ("(555) 123-4567", "phone"),
    ("SW1A 1AA", "postcode"),
    ("sw1a 1aa", "postcode"),
    ("M11AE", "postcode"),
    ("90210-1234", "ZIP+4"),
    ("K1A 0B1", "postal code"),
    ("123-45-6789", "national id"),
    ("943 476 5919", "national id"),
    ("Jane Smith", "name"),
    ("O'Brien Smith", "name"),
    ("SMITH, JANE", "name"),
    ("Dr Patel", "title"),
    ("Mrs. Hughes", "title"),
]

LEGITIMATE = [
    "C0001",
    "S00001",
    "clinic-1",
    "T1",
    "CQ3ZK7M2XA4B",
    "S7VU5OWHKX5ML",
    "hip",
    "hip_and_knee",
    "F",
    "U",
    "40-49",
    "80+",
    "2025-03-14",
    "7.5",
    "45",
    "0",
    "1040",
    "knee_pain_nprs",
    "myofascial_release;stretching;trigger_point",
    "pre",
    "post",
    "running",
    "Running",
    "Hip And Knee",
    "Left Knee",
    "100000001",
    "31.5",
    "-3",
    "",
]


@pytest.mark.parametrize(("value", "kind"), IDENTIFYING, ids=[v for v, _ in IDENTIFYING])
def test_scan_flags_identifying_values_without_echoing_them(value, kind):
    frame = pd.DataFrame({"focus": ["hip", value]}, index=pd.Index([2, 3], name="row"))
    problems = scan_values(frame, "sessions.csv")
    assert len(problems) == 1, problems
    p = problems[0]
    assert (p.file, p.row, p.column, p.severity, p.value) == ("sessions.csv", 3, "focus", "privacy", None)
    assert kind in p.rule and "remove it" in p.rule
    assert value not in p.line()


@pytest.mark.parametrize("value", LEGITIMATE)
def test_scan_leaves_contract_values_alone(value):
    frame = pd.DataFrame({"any": [value]}, index=[2])
    assert scan_values(frame, "x.csv") == []
    assert not looks_identifying(value)


def test_scan_short_ids_are_not_postcodes():
    # "AB12CD" has the shape of a postcode without its space; in an id column it is an id.
    frame = pd.DataFrame({"client_id": ["AB12CD", "M11AE"], "therapist_id": ["T1", "SW1A 1AA"]}, index=[2, 3])
    assert [(p.row, p.column) for p in scan_values(frame, "x.csv")] == [(3, "therapist_id")]


def test_scan_reports_every_column_and_caps_long_runs():
    n = 30
    frame = pd.DataFrame(
        {
            "client_id": [f"C{i:04d}" for i in range(n)],
            "clinic_id": ["a@example.com"] * n,
            "sex": ["F"] * (n - 1) + ["Jo Bloggs"],
        },
        index=pd.RangeIndex(2, n + 2, name="row"),
    )
    problems = scan_values(frame, "clients.csv", max_rows_per_rule=5)
    emails = [p for p in problems if p.column == "clinic_id"]
    assert [p.row for p in emails if p.row is not None] == [2, 3, 4, 5, 6]
    summary = [p for p in emails if p.row is None]
    assert len(summary) == 1 and summary[0].rule.startswith("25 more row(s)")
    assert [(p.row, p.column) for p in problems if p.column == "sex"] == [(n + 1, "sex")]
    assert len(scan_values(frame, "clients.csv", max_rows_per_rule=None)) == n + 1


def test_scan_is_fast_on_long_tables():
    n = 400_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "session_id": [f"S{i:06d}" for i in rng.integers(0, 60_000, n)],
            "measure": rng.choice(["knee_pain_nprs", "lefs", "hip_ir_left_deg"], n),
            "timing": rng.choice(["pre", "post"], n),
            "value": rng.integers(0, 11, n).astype(str),
        },
        index=pd.RangeIndex(2, n + 2, name="row"),
        dtype="string",
    )
    frame.loc[1000, "value"] = "ann@example.com"
    start = time.perf_counter()
    problems = scan_values(frame, "measurements.csv")
    elapsed = time.perf_counter() - start
    assert [(p.row, p.column) for p in problems] == [(1000, "value")]
    assert elapsed < 5, elapsed  # measured ~0.5 s; 800k rows ~1 s


def test_letters_then_digits_can_match_no_rule():
    # the shortcut that skips pseudonyms such as S0000001 is safe only if none of the eleven patterns can
    # match a letters-then-digits token, anywhere in it (before any post-filter)
    import re

    from analysis.privacy import scan

    rng = np.random.default_rng(7)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    tokens = ["S0000001", "C000001", "T1", "M1", "SW1", "Dr1", "Mr12345678901", "D10115", "K1", "a0000000000"]
    tokens += ["A" + "0" * k for k in range(1, 20)] + ["Smith" + "07700900123", "JANE" + "9434765919"]
    for _ in range(3000):
        head = "".join(rng.choice(list(letters), rng.integers(1, 6)))
        tokens.append(head + "".join(rng.choice(list("0123456789"), rng.integers(1, 16))))
    assert all(re.fullmatch(scan.LETTERS_THEN_DIGITS, t) for t in tokens)
    assert len(scan._RULES) == 11
    for kind, pattern, ci, _ in scan._RULES:
        compiled = re.compile(pattern, re.IGNORECASE if ci else 0)
        assert not [t for t in tokens if compiled.search(t)], kind
    frame = pd.DataFrame({"session_id": tokens, "focus": tokens}, index=pd.RangeIndex(2, len(tokens) + 2))
    assert scan_values(frame, "x.csv") == []
    # and what it must not swallow: a bare number can be a phone, letters after digits a postcode
    assert scan.LETTERS_THEN_DIGITS and not re.fullmatch(scan.LETTERS_THEN_DIGITS, "07700900123")
    assert [p.row for p in scan_values(pd.DataFrame({"x": ["S0001", "M11AE"]}, index=[2, 3]), "x.csv")] == [3]


# ----------------------------------------------------------------------------- peer gate

IDS = {"C0001", "S00017", "clinic-1"}


def test_peer_text_clean_passes():
    html = (
        '<p>Clients <td data-count="12">12</td> <td data-count="<5">&lt;5</td> <td data-count="0">0</td>'
        ' <td data-count="*">*</td> <td data-count="&lt;5">&lt;5</td> C00011 is not C0001x</p>'
    )
    assert check_peer_output(html, forbidden_ids=IDS, min_cell=5) == []
    assert_peer_safe(html, forbidden_ids=IDS, min_cell=5)


def test_peer_text_flags_ids_and_small_counts_without_naming_the_id():
    html = "<p>Client C0001 improved</p>\n<td data-count=\"3\">3</td>\n<td data-count='x'>"
    reasons = check_peer_output(html, forbidden_ids=IDS, min_cell=5)
    assert len(reasons) == 3
    assert "client or session id" in reasons[0] and "C0001" not in " ".join(reasons)
    assert reasons[1].startswith("line 2: count 3 is below 5")
    assert "line 3" in reasons[2]
    with pytest.raises(PrivacyError, match="peer report not written"):
        assert_peer_safe(html, forbidden_ids=IDS, min_cell=5, label="peer report")


def test_peer_json_conventions():
    findings = {
        "n": 40,
        "n_clients": 3,
        "clients_n": "<5",
        "count_by_focus": {"hip": 2, "knee": 20, "other": 0},
        "estimate": 1.2,  # not a count
        "ci": [0.5, 3.0],  # not a count
        "arms": [{"label": "hip", "n_sessions": 4.0}, {"label": "C0001"}],
        "S00017": {"n": 10},
    }
    reasons = check_peer_output(findings, forbidden_ids=IDS, min_cell=5)
    joined = "\n".join(reasons)
    assert "$.n_clients: count 3 is below 5" in joined
    assert "$.count_by_focus.hip: count 2" in joined
    assert "$.arms[0].n_sessions: count 4" in joined
    assert "$.arms[1].label: contains a client or session id" in joined
    assert "$: a key is a client or session id" in joined
    assert len(reasons) == 5
    assert "C0001" not in joined and "S00017" not in joined


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("n", True),
        ("n_clients", True),
        ("clients_n", True),
        ("count", True),
        ("counts", True),
        ("session_count", True),
        ("mean", False),
        ("ni", False),
        ("n", True),
        ("noun", False),
    ],
)
def test_count_key_convention(key, expected):
    assert is_count_key(key) is expected


# ----------------------------------------------------------------------------- suppression


def test_suppress_count():
    assert [suppress_count(v, 5) for v in (0, 1, 4, 5, 12, 3.0, float("nan"), None)] == [
        "0",
        "<5",
        "<5",
        "5",
        "12",
        "<5",
        "",
        "",
    ]


def _recoverable(hidden: np.ndarray) -> bool:
    """True if some row or column holding 2+ cells has exactly one hidden cell."""
    for lines in (hidden, hidden.T):
        for line in lines:
            if len(line) > 1 and line.sum() == 1:
                return True
    return False


def test_suppress_table_complementary_rows_and_columns():
    df = pd.DataFrame({"focus": ["hip", "knee", "both"], "F": [3, 20, 12], "M": [15, 9, 30], "total": [18, 29, 42]})
    out = suppress_table(df, ["F", "M", "total"], 5)
    hidden = out[["F", "M", "total"]].isin(["<5", "*"]).to_numpy()
    assert out.loc[0, "F"] == "<5"  # the primary cell
    assert not _recoverable(hidden)
    # row hip: the next smallest cell (M = 15) is hidden, not the total; column F: next smallest (12)
    assert out.loc[0, "M"] == "*" and out.loc[0, "total"] == "18"
    assert out.loc[2, "F"] == "*"
    assert list(out["focus"]) == ["hip", "knee", "both"]
    assert (out[["F", "M", "total"]] == "<5").sum().sum() == 1  # complements are never shown as "<5"


def test_suppress_table_nothing_small_changes_nothing():
    df = pd.DataFrame({"a": [10, 20], "b": [0, 7]})
    out = suppress_table(df, ["a", "b"], 5)
    assert out.to_dict("list") == {"a": ["10", "20"], "b": ["0", "7"]}


@pytest.mark.parametrize("seed", range(5))
def test_suppress_table_random_tables_are_never_recoverable(seed):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.integers(0, 12, size=(6, 4)), columns=list("abcd"))
    out = suppress_table(df, list("abcd"), 5)
    hidden = out.isin(["<5", "*"]).to_numpy()
    assert not _recoverable(hidden)
    small = (df.to_numpy() > 0) & (df.to_numpy() < 5)
    assert hidden[small].all() and (out.eq("<5").to_numpy() == small).all()


def test_suppress_table_single_column_uses_column_complement():
    df = pd.DataFrame({"n": [2, 30, 8]})
    out = suppress_table(df, ["n"], 5)
    assert list(out["n"]) == ["<5", "30", "*"]


# ----------------------------------------------------------------------------- k-anonymity


def test_k_anonymity():
    df = pd.DataFrame(
        {
            "clinic_id": ["c"] * 7,
            "sex": ["F", "F", "F", "M", "M", "M", "M"],
            "age_band": ["40-49"] * 3 + ["50-59"] * 3 + [None],
            "knee": ["left"] * 7,
        }
    )
    assert k_anonymity(df, threshold=3) == {
        "k": 1,
        "n_classes": 3,
        "n_below_threshold": 1,
        "n_records_below_threshold": 1,
    }
    assert k_anonymity(df.iloc[:0])["k"] == 0
    with pytest.raises(KeyError, match="age"):
        k_anonymity(df, quasi=("sex", "age"))


def test_lp_audit_finds_a_cell_pinned_by_totals():
    from analysis.privacy import pinned_cells

    # two hidden cells "<5" against a shown total of 8: each must be 4
    counts = np.array([[4, 4, 8], [3, 1, 4], [7, 5, 12]], float)
    hidden = np.array([[True, True, False], [False, True, False], [False, False, False]])
    assert (0, 0) in pinned_cells(counts, hidden, 5)
    # hiding the row's total is not enough: the grand total 12 and the other row (< 5) still force 4 + 4
    hidden2 = hidden.copy()
    hidden2[0, 2] = hidden2[1, 0] = hidden2[1, 2] = True
    assert (0, 0) in pinned_cells(counts, hidden2, 5)
    # a table where the hidden cells can really take several values
    wide = np.array([[3, 4, 7], [6, 5, 11], [9, 9, 18]], float)
    h = np.array([[True, True, True], [True, True, True], [False, False, False]])
    assert pinned_cells(wide, h, 5) == []


def test_table1_has_no_pinned_cell_on_small_clinics():
    from analysis.privacy import pinned_cells
    from analysis.report.peer import baseline_table

    rng = np.random.default_rng(3)
    for n in (8, 10, 12, 15):
        for _ in range(10):
            clients = pd.DataFrame(
                {
                    "group": rng.choice(["hip-focused", "knee-focused"], n),
                    "sex": rng.choice(["F", "M", "X"], n, p=[0.55, 0.4, 0.05]),
                    "age_band": rng.choice(["30-39", "40-49", "50-59"], n),
                    "activity": rng.choice(["cycling", "running", "none", "other"], n),
                    "knee": rng.choice(["left", "right", "both"], n),
                }
            )
            if clients["group"].nunique() < 2:
                continue
            table = baseline_table(clients, 5)
            groups = sorted(clients["group"].unique())
            for var, block in table.groupby("variable", sort=False):
                full = (
                    clients.groupby([var, "group"])
                    .size()
                    .unstack("group")
                    .reindex(columns=groups)
                    .fillna(0)
                    .reindex(block["level"])
                    .to_numpy(dtype=float)
                )
                full = np.column_stack([full, full.sum(axis=1)])
                full = np.vstack([full, full.sum(axis=0)])
                shown = block[[*groups, "total"]].to_numpy()
                pad = np.zeros((1, len(groups) + 1), bool)
                hidden = np.vstack([np.vectorize(lambda v: v == "*" or str(v).startswith("<"))(shown), pad])
                small = np.vstack([np.vectorize(lambda v: str(v).startswith("<"))(shown), pad])
                # what a peer knows: shown numbers, the group sizes, "<5" = 1..4, "*" = anything
                assert pinned_cells(full, hidden, 5, small) == [], (n, var, block)


def test_responder_ratios_and_km_steps_withheld_for_small_cells():
    from analysis.privacy import km_for_peers, responder_cells_small

    entry = {
        "status": "done",
        "n_hip_focused": 3,
        "responders_hip_focused": 3,
        "n_comparator": 5,
        "responders_comparator": 3,
    }
    assert responder_cells_small(entry, 5)
    big = {
        "status": "done",
        "n_hip_focused": 30,
        "responders_hip_focused": 12,
        "n_comparator": 25,
        "responders_comparator": 10,
    }
    assert not responder_cells_small(big, 5)
    km = pd.DataFrame(
        {"group": ["a"] * 4, "week": [0, 1, 2, 3], "survival": [1, 0.8, 0.6, 0.5], "at_risk": [9, 6, 4, 2]}
    )
    assert km_for_peers(km, 5)["week"].tolist() == [0, 1]


def test_local_paths_never_reach_peers():
    from analysis.report.provenance import params_text

    html = "<p>read from /home/olivia/clinic-north/export</p>"
    assert any("local file path" in r for r in check_peer_output(html, forbidden_ids=[], min_cell=5))
    assert any(
        "local file path" in r
        for r in check_peer_output({"input": "C:\\\\Users\\\\olivia\\\\data"}, forbidden_ids=[], min_cell=5)
    )
    assert check_peer_output("<p>data/raw/demo and 2024-01 to 2025-06</p>", forbidden_ids=[], min_cell=5) == []
    text = params_text({"data": {"input": "/home/olivia/clinic-north/export", "registry": "config/measures.yaml"}})
    assert "olivia" not in text and "<outside the project>" in text and "config/measures.yaml" in text
