"""Best guesses for a draft mapping (pure): what a column holds, its date format, what a spelling means.

Every guess is a small pure function of a header or of the values as exported; the draft mapping
(:mod:`.draft`) writes each one with a comment, and a ``???`` where no guess is safe. The one table of
synonyms (:data:`SYNONYMS`) is the place to teach the drafter a new spelling.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from analysis import contract
from analysis.deidentify.mapping import norm_text

#: words (after normalising case, accents and punctuation) that point to a contract category.
#: A value is matched word by word, so "HIP + pelvis" and "hip/glutes" both find "hip".
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "sex": {
        "F": ("f", "female", "woman", "w", "fem", "girl"),
        "M": ("m", "male", "man", "boy"),
        "X": ("x", "non binary", "nonbinary", "nb", "diverse", "other"),
        "U": ("u", "unknown", "not stated", "prefer not to say", "not recorded"),
    },
    "knee": {
        "left": ("l", "left", "lt", "lft", "left knee", "l knee"),
        "right": ("r", "right", "rt", "rgt", "right knee", "r knee"),
        "both": ("both", "bilateral", "bilat", "bil", "b", "l r", "left right", "left and right", "r l", "both knees"),
    },
    "activity": {
        "running": ("running", "run", "runner", "jogging", "jog", "parkrun", "marathon", "trail running"),
        "cycling": ("cycling", "cycle", "bike", "biking", "cyclist", "spin", "spinning", "mtb"),
        "gym": ("gym", "weights", "crossfit", "fitness", "strength training", "weight training"),
        "team_sport": (
            "football",
            "soccer",
            "rugby",
            "netball",
            "hockey",
            "basketball",
            "handball",
            "volleyball",
            "cricket",
            "team sport",
            "team sports",
        ),
        "walking": ("walking", "walk", "hiking", "hillwalking", "rambling", "nordic walking"),
        "none": ("none", "no", "nil", "no sport", "sedentary", "nothing", "inactive"),
        "other": ("other", "swimming", "yoga", "pilates", "tennis", "dance", "dancing", "golf", "climbing", "ski"),
    },
    "techniques": {
        "myofascial_release": ("mfr", "myofascial", "myofascial release", "fascial release", "soft tissue"),
        "stretching": ("stretching", "stretch", "stretches", "pnf"),
        "trigger_point": ("trigger point", "trigger points", "trp", "trigger point release", "tp"),
        "joint_mobilisation": (
            "joint mob",
            "mob",
            "mobs",
            "mobilisation",
            "mobilization",
            "joint mobilisation",
            "joint mobilization",
            "maitland",
        ),
        "exercise_advice": (
            "exercise advice",
            "home exercises",
            "home exercise",
            "hep",
            "exercise",
            "exercises",
            "advice",
            "rehab",
            "exercise prescription",
        ),
        "other": ("other", "massage", "taping", "kinesio taping", "ultrasound", "heat", "ice"),
    },
}
#: words that say which region a treatment-area label names (focus is built from the regions found)
FOCUS_WORDS: dict[str, tuple[str, ...]] = {
    "hip": ("hip", "hips", "pelvis", "pelvic", "glute", "glutes", "gluteal", "piriformis", "groin", "adductor"),
    "knee": ("knee", "knees", "patella", "patellar", "patellofemoral", "pfj", "vmo", "quad", "quads", "tibiofemoral"),
    "other": ("back", "lumbar", "spine", "ankle", "foot", "shoulder", "neck", "other", "calf", "hamstring"),
}

#: header patterns (on the normalised header) -> role; the first that matches wins
ROLE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("date_of_birth", r"\b(dob|d o b|date of birth|birth ?date|birthday|born)\b"),
    ("email", r"e ?mail"),
    ("phone", r"\b(phone|mobile|tel|telephone|cell|fax)\b"),
    ("address", r"\b(address|street|city|town|suburb|post ?code|zip|county|country|state|addr)\b"),
    ("notes", r"\b(note|notes|comment|comments|remarks?|free text|memo)\b"),
    ("patient_no", r"\b(patient|client|record|mrn|chart|file|case)\s*(no|nr|number|num|id|ref)\b|^(id|mrn)$"),
    ("name", r"\b(name|names|surname|forename)\b"),
    ("measure", r"\b(nprs|vas|pain|lefs|koos|ir|internal rotation)\b"),
    ("symptom_weeks", r"\b(symptom|symptoms|onset|since|how long|duration of (pain|symptoms))\b"),
    (
        "session_date",
        r"\b(visit|appointment|appt|session|treatment|consult|consultation|service)\s*(date|day)\b|^date$",
    ),
    ("therapist", r"\b(therapist|practitioner|clinician|provider|physio|physiotherapist|staff|seen by)\b"),
    ("focus", r"\b(area|region|site|focus|body part|treated)\b"),
    ("techniques", r"\b(techniques?|modality|modalities|interventions?|treatments? given|treatment)\b"),
    ("minutes", r"\b(minutes|mins?|length|duration)\b"),
    ("sex", r"\b(sex|gender)\b"),
    ("knee", r"\bknee\b"),
    ("activity", r"\b(sport|sports|activity|activities|hobby|exercise type)\b"),
    ("sitting_hours", r"\b(sitting|seated|desk)\b"),
    ("age", r"^age( years| yrs)?$"),
)
IDENTIFYING_ROLES = ("patient_no", "name", "date_of_birth", "email", "phone", "address", "notes")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)
_PHONE = re.compile(r"^\+?[\d ()-]{8,}$")
_DMY = re.compile(r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{2}|\d{4})$")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def words(value: str) -> str:
    """A value as plain words: case folded, accents removed, punctuation and '+'/'&'/'/' as spaces."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w]+", " ", norm_text(value))).strip()


def guess_role(header: str, values: Sequence[str] = ()) -> str | None:
    """What a column holds, from its header and (for unknown headers) its values; None if unknown.

    Examples
    --------
    >>> guess_role("Date of Birth"), guess_role("Hip IR L"), guess_role("Treatment Area")
    ('date_of_birth', 'measure', 'focus')
    """
    h = words(header)
    for role, pattern in ROLE_PATTERNS:
        if re.search(pattern, h):
            return role
    filled = [v.strip() for v in values if v and v.strip()]
    if filled and sum(bool(_EMAIL.match(v)) for v in filled) > len(filled) / 2:
        return "email"
    if filled and sum(bool(_PHONE.match(v)) for v in filled) > len(filled) / 2:
        return "phone"
    return None


def guess_measure(header: str, measures: Iterable[str]) -> tuple[str | None, str]:
    """(registry measure or None, timing) for a measurement column header.

    Examples
    --------
    >>> guess_measure("Pain After", ["knee_pain_nprs", "hip_ir_left_deg", "lefs"])
    ('knee_pain_nprs', 'post')
    """
    h = words(header)
    keys = list(measures)
    timing = "post" if re.search(r"\b(after|post|end|finish|discharge)\b", h) else "pre"
    side = "left" if re.search(r"\b(l|left|lt)\b", h) else "right" if re.search(r"\b(r|right|rt)\b", h) else None
    candidates: list[str] = []
    if re.search(r"\b(nprs|vas|pain)\b", h):
        candidates = [k for k in keys if "pain" in k]
    elif re.search(r"\b(ir|internal rotation)\b", h) and side:
        candidates = [k for k in keys if "ir" in k.split("_") and side in k.split("_")]
    else:
        candidates = [k for k in keys if k.split("_")[0] in h.split()]
    return (candidates[0] if len(candidates) == 1 else None), timing


@dataclass(frozen=True)
class DateGuess:
    """strftime formats for a set of date values, and the question to ask when the order is unclear."""

    formats: tuple[str, ...]
    question: str | None = None


def guess_date_formats(values: Iterable[str]) -> DateGuess:
    """The date format(s) of exported values; day/month order from values whose day is over 12.

    Examples
    --------
    >>> guess_date_formats(["31/01/2024", "02/03/2024"]).formats
    ('%d/%m/%Y',)
    >>> guess_date_formats(["01/02/2024"]).question is not None
    True
    """
    seps: dict[str, int] = {}
    year_digits: set[int] = set()
    first_over, second_over, seen = False, False, 0
    for raw in values:
        v = (raw or "").strip().split(" ")[0]
        m = _DMY.match(v)
        if not m:
            continue
        seen += 1
        a, sep, b, y = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
        seps[sep] = seps.get(sep, 0) + 1
        year_digits.add(len(y))
        first_over |= a > 12
        second_over |= b > 12
    if not seen:
        return DateGuess(("%d/%m/%Y",))
    month_first = second_over and not first_over
    order = ("%m", "%d") if month_first else ("%d", "%m")
    question = None
    if first_over and second_over:
        question = "some dates have a day over 12 in the first place and some in the second: mixed formats?"
    elif not first_over and not second_over:
        question = (
            "no date has a day over 12, so day/month order cannot be told from the values; "
            "day first (%d/%m/%Y) is assumed: is that right? if the export writes month first, use %m/%d/%Y"
        )
    year = ["%Y" if d == 4 else "%y" for d in sorted(year_digits, reverse=True)]
    formats = [f"{order[0]}{s}{order[1]}{s}{y}" for s, _ in sorted(seps.items(), key=lambda kv: -kv[1]) for y in year]
    return DateGuess(tuple(formats), question)


def _lookup(field: str, w: str) -> str | None:
    for value, synonyms in SYNONYMS[field].items():
        if w in synonyms or w == words(value):
            return value
    return None


def guess_category(field: str, value: str) -> str | None:
    """The contract category a spelling most likely means, or None when no guess is safe.

    Examples
    --------
    >>> guess_category("focus", "HIP + pelvis"), guess_category("focus", "knee (VMO, ITB)")
    ('hip', 'knee')
    >>> guess_category("sex", "Male"), guess_category("knee", "Bilateral"), guess_category("activity", "Bike")
    ('M', 'both', 'cycling')
    """
    w = words(value)
    if field == "focus":
        toks = set(w.split())
        found = [r for r in ("hip", "knee") if toks & set(FOCUS_WORDS[r])]
        if len(found) == 2:
            return "hip_and_knee"
        if found:
            return found[0]
        if toks & set(FOCUS_WORDS["other"]):
            return "other"
        return None
    if not w:
        return None
    hit = _lookup(field, w)
    if hit is None and field in ("activity", "techniques"):
        # "spin class", "PNF stretching", "Maitland mobs": the first word the table knows decides
        hit = next((h for t in w.split() if (h := _lookup(field, t)) is not None), None)
    return hit


def contract_values(field: str) -> tuple[str, ...]:
    """The contract's categories for a field (``focus``, ``sex``, ``knee``, ``activity``, ``techniques``)."""
    return {
        "sex": contract.SEXES,
        "knee": contract.KNEES,
        "activity": contract.ACTIVITIES,
        "focus": contract.FOCI,
        "techniques": contract.TECHNIQUES,
    }[field]
