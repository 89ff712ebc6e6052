"""De-identify: turn a practice-software export into the three contract tables.

``outcomes draft-mapping EXPORT [--out M.yaml]`` drafts the mapping from the export's headers and values
(:mod:`.draft`, guesses in :mod:`.guess`). ``outcomes deidentify EXPORT... --mapping M.yaml --out DIR
[--key-file F] [--crosswalk PRIVATE_DIR]`` reads
one or more exports (CSV or XLSX, one row per visit, identifying columns
included), and writes ``clients.csv``, ``sessions.csv``, ``measurements.csv`` and
``deidentify_log.json`` (counts only) to ``DIR``. ``outcomes keygen --out F``
creates the secret key. See ``data/examples/`` for an export and its mapping.

How it works
------------
* **Allow-list.** Only the source columns named in the mapping are read. Every
  other column is dropped unread and listed (name and reason) in the log.
* **Pseudonyms.** ``client_id`` = ``C`` + base32 of HMAC-SHA256(key, normalised
  patient identity), truncated to params ``privacy.pseudonym_chars``; the
  identity is the mapping's ``identity`` columns (e.g. name + date of birth, or
  a practice patient number), normalised (case, accents, spaces, date format)
  so that the same patient gets the same id in every export made with the same
  key. ``session_id`` = ``S`` + HMAC of the patient identity, the real visit
  date and any ``session_key`` columns; ``therapist_id`` = ``T`` + HMAC of the
  therapist's normalised name. Without the key the ids cannot be linked back;
  with it, they can be reproduced (keep it outside the repo; back it up).
* **Dates.** Each client's dates move by one keyed offset in
  ``-privacy.date_shift_max_days..-1`` or ``1..max`` days, never 0 (intervals between visits are
  kept). With ``--crosswalk``, a client seen by an earlier run keeps that
  run's offset (:mod:`.state`). Beside the tables, ``calendar.csv`` (0600) keeps each client's real
  weeks since their last visit, so "active" stays right on shifted dates (:mod:`.calendar`). A shift
  that would put a date in the future is mirrored backwards, and
  shifted dates are kept between 2000-01-01 and today. The date of birth becomes
  the age band at the *real* first visit and is then dropped.
* **Conflicts.** A client-level value that differs across a patient's visits is chosen by
  ``privacy.conflict_rule`` (latest, most_frequent or refuse) and reported (:mod:`.conflicts`).
* **Final gate.** The written tables are scanned with
  :func:`analysis.privacy.scan_values`; anything that looks like an email, phone,
  postcode or name stops the run (:class:`~analysis.errors.PrivacyError`).
* **Problems** (unmapped category values, unreadable dates or numbers, blank
  identity, patients under 18) are all reported at once, one line each (file,
  row, column, what to add to the mapping), and nothing is written. Values are
  shown only when they cannot identify anyone (category labels, numbers);
  dates and anything that looks identifying are never shown.

HIPAA Safe Harbor identifiers (45 CFR 164.514(b)(2)) and what happens to each
-------------------------------------------------------------------------------
1. Names: dropped; the patient's name may feed the keyed HMAC (identity) only.
   Therapist names become keyed pseudonyms ``T...``.
2. Geographic subdivisions smaller than a state (street, city, postcode/ZIP):
   dropped (never read unless wrongly mapped; then the final gate stops it).
3. Dates (except year) related to the individual: date of birth -> age band
   (ages 80 and over are one band, stricter than Safe Harbor's 90+); visit
   dates are *shifted* per client. Note: shifted dates keep intervals and the
   approximate season, so the output is not Safe Harbor de-identified in the
   strict sense (which allows the year only); it is pseudonymised data for a
   clinic's own analysis and for peers who only see aggregates (peer outputs
   pass :func:`analysis.privacy.assert_peer_safe`).
4. Telephone numbers: dropped.      5. Fax numbers: dropped.
6. Email addresses: dropped.        7. Social security numbers: dropped.
8. Medical record numbers (practice patient numbers): identity input to the
   keyed HMAC only, then dropped.
9. Health plan beneficiary numbers: dropped.   10. Account numbers: dropped.
11. Certificate/licence numbers: dropped.      12. Vehicle identifiers: dropped.
13. Device identifiers and serial numbers: dropped.   14. URLs: dropped.
15. IP addresses: dropped.          16. Biometric identifiers: dropped.
17. Full-face photographs and comparable images: not read (tables only).
18. Any other unique identifying number, characteristic or code: dropped;
    free-text notes are always dropped. The only codes written are the keyed
    pseudonyms above and the ``clinic_id`` the mapping sets.

Residual risk: rare combinations of age band, sex, knee, sport and symptom
length can still single a client out; :func:`analysis.privacy.k_anonymity`
measures it, which is why peers get aggregates only.
Layout (one job per module)
---------------------------
``mapping``      the mapping file: parse and check it (pure), read it (bounded, no YAML aliases)
``export``       read practice exports (CSV/XLSX): the mapped columns only, strings as typed
``values``       values as people type them: dates, numbers, durations, onsets, age bands, what may be echoed
``log``          the rows being de-identified, the problems and the log collected so far
``fields``       each contract field from its source columns, every problem at once (pure)
``pseudonyms``   keyed pseudonyms and date offsets (HMAC-SHA256 under the secret key)
``conflicts``    client-level values that differ across visits: found, chosen by a rule, reported (pure)
``tables``       the pure core: exports -> the three contract tables, log and crosswalk
``calendar``     the private sidecar of real weeks since each client's last visit (active, last seen)
``state``        successive exports: the private state beside the crosswalk, and what is new since it
``guess``        best guesses for a draft mapping: column roles, date formats, spellings (one synonym table)
``draft``        the drafted mapping (pure) and ``outcomes draft-mapping``'s edge
``keys``         the secret key at the edge: read it, create it (``outcomes keygen``)
``run``          the edge of ``outcomes deidentify``: where things may go, read, gate, write atomically
"""

from analysis.deidentify.export import read_export
from analysis.deidentify.keys import load_key, run_keygen
from analysis.deidentify.mapping import Mapping, load_mapping_yaml, norm_text, parse_mapping
from analysis.deidentify.pseudonyms import date_offset, key_fingerprint, pseudonym
from analysis.deidentify.run import check_against_contract, run_deidentify
from analysis.deidentify.tables import Deidentified, deidentify_frames

__all__ = [
    "Deidentified",
    "Mapping",
    "check_against_contract",
    "date_offset",
    "deidentify_frames",
    "key_fingerprint",
    "load_key",
    "load_mapping_yaml",
    "norm_text",
    "parse_mapping",
    "pseudonym",
    "read_export",
    "run_deidentify",
    "run_keygen",
]
