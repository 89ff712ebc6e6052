"""A synthetic, messy practice-software export, for trying `outcomes deidentify`.

Every person in it is invented: names come from a small built-in list, email
addresses use the reserved ``example.com``/``example.org`` domains, phone
numbers the UK drama range (07700 900xxx) and postcodes a made-up set. The mess
is the kind real exports have: DD/MM/YYYY (and some DD.MM.YYYY) dates, ``Hip +
knee`` style categories in mixed case with stray spaces, decimal commas,
durations written as "6 months", "n/a" for missing values, demographics only on
the first visit, an exactly duplicated row and free-text notes that name people.

``data/examples/practice_export.csv`` is ``make_example_export(params privacy.example_seed,
privacy.example_patients)`` written with :func:`analysis.store.write_csv`; its mapping is
``data/examples/mapping.yaml``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

FIRST_NAMES = (
    "Jane",
    "Oliver",
    "Amira",
    "Tom",
    "Sofia",
    "Liam",
    "Grace",
    "Noah",
    "Priya",
    "Ethan",
    "Chloe",
    "Jack",
    "Maya",
    "Lucas",
    "Freya",
    "Daniel",
    "Leila",
    "Sam",
    "Ruth",
    "Kofi",
)
LAST_NAMES = (
    "Smith",
    "Jones",
    "Patel",
    "Brown",
    "Taylor",
    "Wilson",
    "Khan",
    "Evans",
    "Thomas",
    "Roberts",
    "Walker",
    "Wright",
    "Hughes",
    "Green",
    "Hall",
    "Okafor",
    "Nowak",
    "Murphy",
    "Clarke",
    "Singh",
)
STREETS = ("High Street", "Mill Lane", "Church Road", "Station Road", "Park Avenue", "Queens Road")
TOWNS = ("Exampleton", "Sampleford", "Testbury", "Mockham")
THERAPISTS = ("Anna Berg", "Tom Reid", "Sara Khan")

COLUMNS = (
    "Patient No",
    "Patient Name",
    "Date of Birth",
    "Email",
    "Phone",
    "Address",
    "Postcode",
    "Visit Date",
    "Therapist",
    "Treatment Area",
    "Techniques",
    "Pain Before",
    "Pain After",
    "Hip IR L",
    "Hip IR R",
    "LEFS",
    "Minutes",
    "Sport",
    "Sitting hrs/day",
    "Symptom Duration",
    "Gender",
    "Knee",
    "Notes",
)

_AREAS = {
    "hip": ("Hip", "hip ", "HIP", " Hip"),
    "knee": ("Knee", "knee", "KNEE "),
    "hip_and_knee": ("Hip + knee", "Knee + hip", "hip+knee", "Hip & Knee"),
    "other": ("Other", "Lower back"),
}
_TECHNIQUES = (
    "MFR",
    "Myofascial release",
    "Stretching",
    "stretch",
    "Trigger point",
    "TrP",
    "Joint mob",
    "Mobilisation",
    "Exercise advice",
    "Home exercises",
)
_SPORTS = ("Jogging", "Running", "running ", "Cycling", "Bike", "Gym", "Football", "Walking", "None", "")
_SEXES = {"F": ("Female", "female ", "F"), "M": ("Male", "M", "male"), "U": ("",)}
_KNEES = ("Left", "L", "left ", "Right", "R", "RIGHT", "Both", "Bilateral")
_NOTES = (
    "",
    "",
    "",
    "Referred by Dr Patel",
    "Call back on 07700 900456 if no better",
    "Works nights",
    "Mrs Hughes says better on stairs",
    "email results to gp.practice@example.org",
    "Sore after last visit",
)


def _fmt_date(d: dt.date, rng: np.random.Generator) -> str:
    # Most dates as DD/MM/YYYY, a few with dots and a trailing space, as exported by hand-edited sheets.
    return (
        d.strftime("%d.%m.%Y") if rng.random() < 0.1 else d.strftime("%d/%m/%Y") + (" " if rng.random() < 0.1 else "")
    )


def _fmt_num(x: float, rng: np.random.Generator) -> str:
    s = f"{x:.1f}".rstrip("0").rstrip(".")
    return s.replace(".", ",") if rng.random() < 0.3 else s


def make_example_export(seed: int, n_patients: int = 40, layout: str = "visits") -> pd.DataFrame:
    """A synthetic practice-software export: one row per visit, identifying columns included.

    Parameters
    ----------
    seed
        Seed of the random generator (params ``privacy.example_seed``).
    n_patients
        Number of invented patients (params ``privacy.example_patients``).
    layout
        ``"visits"`` (the default: one visit per row, demographics on the first visit) or
        ``"appointments"`` (:data:`APPOINTMENT_COLUMNS`: an appointment report with split names,
        month-first US dates, the patient's details repeated on every row and sometimes changed
        between visits, onsets instead of durations, and other spellings). The second layout is drawn
        from the same patients, so the two exports of one seed describe one clinic.

    Returns
    -------
    pandas.DataFrame
        All-string columns ``COLUMNS`` ("Patient No", "Patient Name", "Date of Birth",
        "Email", "Phone", "Address", "Postcode", "Visit Date", "Therapist",
        "Treatment Area", "Techniques", "Pain Before", "Pain After", "Hip IR L",
        "Hip IR R", "LEFS", "Minutes", "Sport", "Sitting hrs/day", "Symptom Duration",
        "Gender", "Knee", "Notes"), rows sorted by visit date as a practice system lists them.

    Examples
    --------
    >>> df = make_example_export(1, n_patients=3)
    >>> df["Patient Name"].str.strip().str.lower().nunique()
    3
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, str]] = []
    used: set[tuple[str, str]] = set()
    for i in range(n_patients):
        while True:
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            if (first, last) not in used:
                used.add((first, last))
                break
        first_visit = dt.date(2024, 1, 8) + dt.timedelta(days=int(rng.integers(0, 540)))
        age = int(rng.integers(19, 84))
        dob = first_visit - dt.timedelta(days=int(age * 365.25 + rng.integers(0, 360)))
        sex = rng.choice(["F", "M", "U"], p=[0.55, 0.42, 0.03])
        main_area = rng.choice(["hip", "knee", "hip_and_knee"], p=[0.4, 0.4, 0.2])
        n_visits = int(rng.integers(2, 10))
        pain = int(rng.integers(4, 10))
        ir_l, ir_r = float(rng.normal(30, 6)), float(rng.normal(31, 6))
        lefs = int(rng.integers(25, 60))
        phone = (
            f"07700 900{int(rng.integers(0, 1000)):03d}"
            if rng.random() < 0.7
            else f"+44 7700 900{int(rng.integers(0, 1000)):03d}"
        )
        email = f"{first.lower()}.{last.lower()}{int(rng.integers(1, 99))}@example.com"
        address = f"{int(rng.integers(1, 120))} {rng.choice(STREETS)}, {rng.choice(TOWNS)}"
        postcode = (
            f"{rng.choice(['EX', 'SA', 'TB', 'MK'])}{int(rng.integers(1, 20))} {int(rng.integers(1, 10))}"
            f"{rng.choice(list('ABDEFGHJLNPQRSTUWXYZ'))}{rng.choice(list('ABDEFGHJLNPQRSTUWXYZ'))}"
        )
        symptom = rng.choice(["6 months", "12 wks", "1 year", "8 weeks", "3 mths", "26", "2 years", "4 weeks"])
        therapist = rng.choice(THERAPISTS)
        visit = first_visit
        for v in range(n_visits):
            area = main_area if rng.random() < 0.85 else rng.choice(["hip", "knee", "hip_and_knee", "other"])
            hip = area in ("hip", "hip_and_knee")
            techs = rng.choice(_TECHNIQUES, size=int(rng.integers(0, 4)), replace=False)
            after = max(0, pain - int(rng.integers(0, 3)))
            name = f"{first} {last}"
            # Names typed differently on different visits: the pseudonym must not change.
            name = name.upper() if rng.random() < 0.1 else (name.lower() + " " if rng.random() < 0.1 else name)
            rows.append(
                {
                    "Patient No": f"P{10000 + i:05d}",
                    "Patient Name": name,
                    "Date of Birth": dob.strftime("%d/%m/%Y"),
                    "Email": email,
                    "Phone": phone,
                    "Address": address,
                    "Postcode": postcode,
                    "Visit Date": _fmt_date(visit, rng),
                    "Therapist": therapist if rng.random() < 0.9 else rng.choice(THERAPISTS),
                    "Treatment Area": rng.choice(_AREAS[area]),
                    "Techniques": rng.choice([", ", " / ", ","]).join(techs),
                    "Pain Before": str(pain) if rng.random() > 0.04 else "n/a",
                    "Pain After": str(after) if rng.random() > 0.1 else "",
                    "Hip IR L": _fmt_num(ir_l, rng) if rng.random() > 0.1 else "",
                    "Hip IR R": _fmt_num(ir_r, rng) if rng.random() > 0.1 else "",
                    "LEFS": str(lefs) if v % 3 == 0 else "",
                    "Minutes": rng.choice(["30", "45", "45 min", "60", "40"]),
                    "Sport": rng.choice(_SPORTS) if v == 0 else "",
                    "Sitting hrs/day": _fmt_num(float(rng.choice([2, 4, 6, 7.5, 8, 9, 10])), rng) if v == 0 else "",
                    "Symptom Duration": symptom if v == 0 else "",
                    "Gender": rng.choice(_SEXES[sex]),
                    "Knee": rng.choice(_KNEES) if v == 0 else "",
                    "Notes": rng.choice(_NOTES),
                }
            )
            pain = int(np.clip(pain - rng.integers(-1, 3 if hip else 2), 0, 10))
            ir_l += float(rng.normal(1.0 if hip else 0.2, 1.0))
            ir_r += float(rng.normal(1.0 if hip else 0.2, 1.0))
            lefs = int(np.clip(lefs + rng.integers(0, 6), 0, 80))
            visit = visit + dt.timedelta(days=int(rng.integers(5, 15)))
    # The same visit exported twice (overlapping exports are common); de-identification removes it.
    rows.append(dict(rows[int(rng.integers(0, len(rows)))]))
    df = pd.DataFrame(rows, columns=list(COLUMNS), dtype="string")
    order = pd.to_datetime(df["Visit Date"].str.strip().str.replace(".", "/", regex=False), format="%d/%m/%Y")
    df = df.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)
    if layout == "visits":
        return df
    if layout == "appointments":
        return appointment_layout(df, np.random.default_rng([seed, 1]))
    raise ValueError(f"layout {layout!r}: use 'visits' or 'appointments'")


APPOINTMENT_COLUMNS = (
    "Client ID",
    "First Name",
    "Last Name",
    "DOB",
    "Sex",
    "Mobile",
    "Email Address",
    "Street",
    "City",
    "Zip",
    "Appointment Date",
    "Practitioner",
    "Body Region",
    "Treatment Given",
    "NPRS pre",
    "NPRS post",
    "Hip IR Left (deg)",
    "Hip IR Right (deg)",
    "LEFS score",
    "Duration (min)",
    "Activity",
    "Sitting (h/day)",
    "Symptoms since",
    "Affected Knee",
    "Clinical Notes",
)
# the visits layout's spellings -> contract values, so the appointments layout can spell them its own way
_CANON = {
    "focus": {"hip": "hip", "knee": "knee", "hip + knee": "hip_and_knee", "knee + hip": "hip_and_knee"}
    | {"hip+knee": "hip_and_knee", "hip & knee": "hip_and_knee", "other": "other", "lower back": "other"},
    "sex": {"female": "F", "f": "F", "male": "M", "m": "M", "": "U"},
    "knee": {"left": "left", "l": "left", "right": "right", "r": "right", "both": "both", "bilateral": "both"},
    "sport": {"jogging": "running", "running": "running", "cycling": "cycling", "bike": "cycling", "gym": "gym"}
    | {"football": "team_sport", "walking": "walking", "none": "none", "": ""},
}
_APPT_SPELLINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "focus": {
        "hip": ("HIP + pelvis", "hip/glutes", "Hip", "R hip"),
        "knee": ("knee (VMO, ITB)", "Knee", "PFJ", "knee - patellofemoral"),
        "hip_and_knee": ("Hip and knee", "hip/knee", "HIP + KNEE"),
        "other": ("Lumbar spine", "Other"),
    },
    "sex": {"F": ("female", "F", "Woman"), "M": ("Male", "M", "man"), "U": ("",)},
    "knee": {"left": ("Lt", "Left", "L"), "right": ("Rt", "right", "R"), "both": ("Bilat", "L+R", "both")},
    "sport": {
        "running": ("Running", "parkrun"),
        "cycling": ("Cycling", "spin class"),
        "gym": ("Gym/weights",),
        "team_sport": ("Rugby", "Netball"),
        "walking": ("Hiking",),
        "none": ("none",),
        "": ("",),
    },
}
_APPT_TECHNIQUES = ("Soft tissue", "MFR", "PNF stretching", "Trigger points", "Maitland mobs", "HEP", "Dry needling")


def appointment_layout(visits: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The same visits as an appointment report (:data:`APPOINTMENT_COLUMNS`), another system's layout.

    Patient details are repeated on every row, as appointment reports do, and for about one patient in
    six a later visit records a different knee, sport or sex (re-entered at that visit), so the export
    has the conflicting client-level values that de-identification must report.
    """

    def c(kind: str, text: str) -> str:
        return _CANON[kind][" ".join(str(text).split()).casefold()]

    def spell(kind: str, value: str) -> str:
        return str(rng.choice(_APPT_SPELLINGS[kind][value]))

    def us(text: str) -> str:
        d = dt.datetime.strptime(str(text).strip().replace(".", "/"), "%d/%m/%Y")
        return d.strftime("%m/%d/%Y")

    first = visits.groupby("Patient No", sort=False).first()  # demographics are typed on the first visit
    first_visit = visits.groupby("Patient No", sort=False)["Visit Date"].first()
    out: list[dict[str, str]] = []
    done: dict[tuple[str, ...], dict[str, str]] = {}
    for _, r in visits.iterrows():
        if tuple(r) in done:  # the same visit exported twice stays one repeated row
            out.append(done[tuple(r)])
            continue
        pid = r["Patient No"]
        p = first.loc[pid]
        drift = rng.random() < 0.05  # a later visit where a patient detail was typed differently
        sex = c("sex", p["Gender"])
        knee = c("knee", p["Knee"]) if p["Knee"] else "left"
        sport = c("sport", p["Sport"])
        if drift and r["Visit Date"] != first_visit[pid]:
            which = rng.choice(["sex", "knee", "sport"])
            if which == "knee":
                knee = str(rng.choice([k for k in ("left", "right", "both") if k != knee]))
            elif which == "sport":
                sport = str(rng.choice([s for s in ("running", "cycling", "gym", "walking") if s != sport]))
            elif sex in ("F", "M"):
                sex = "M" if sex == "F" else "F"
        weeks = parse_weeks(str(p["Symptom Duration"]))
        onset = dt.datetime.strptime(us(first_visit[pid]), "%m/%d/%Y") - dt.timedelta(weeks=weeks)
        first_name, _, last_name = str(r["Patient Name"]).strip().partition(" ")
        techs = [str(rng.choice(_APPT_TECHNIQUES)) for t in str(r["Techniques"]).split(",") if t.strip()]
        out.append(
            {
                "Client ID": pid.replace("P", "C-"),
                "First Name": first_name,
                "Last Name": last_name,
                "DOB": us(r["Date of Birth"]),
                "Sex": spell("sex", sex),
                "Mobile": r["Phone"],
                "Email Address": r["Email"],
                "Street": str(r["Address"]).split(",")[0],
                "City": str(r["Address"]).split(", ")[-1],
                "Zip": r["Postcode"],
                "Appointment Date": us(r["Visit Date"]),
                "Practitioner": r["Therapist"],
                "Body Region": spell("focus", c("focus", r["Treatment Area"])),
                "Treatment Given": "; ".join(dict.fromkeys(techs)),
                "NPRS pre": r["Pain Before"],
                "NPRS post": r["Pain After"],
                "Hip IR Left (deg)": r["Hip IR L"],
                "Hip IR Right (deg)": r["Hip IR R"],
                "LEFS score": r["LEFS"],
                "Duration (min)": str(r["Minutes"]).replace(" min", ""),
                "Activity": spell("sport", sport),
                "Sitting (h/day)": p["Sitting hrs/day"],
                "Symptoms since": onset.strftime("%b %Y"),
                "Affected Knee": spell("knee", knee),
                "Clinical Notes": r["Notes"],
            }
        )
        done[tuple(r)] = out[-1]
    return pd.DataFrame(out, columns=list(APPOINTMENT_COLUMNS), dtype="string")


def parse_weeks(text: str) -> int:
    """Whole weeks of a duration as the visits layout writes it ("6 months", "12 wks", "26")."""
    number, _, unit = text.strip().partition(" ")
    per = {"": 1, "week": 1, "wk": 1, "month": 4.33, "mth": 4.33, "year": 52}[unit.rstrip("s")]
    return round(float(number) * per)
