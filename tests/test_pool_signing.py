"""outcomes pool trusts only bundles a registered clinic signed, and checks every number before pooling.

One test per attack: each asserts the exit code, one line naming the file (and the field), no
"internal error", and that nothing was written.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pandas as pd
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from analysis import signing
from analysis.cli import main
from analysis.errors import InputError
from analysis.report import findings as fnd
from analysis.report.publish import write_outputs
from analysis.store import to_json_text
from test_pool import bundle

KEYS = {c: Ed25519PrivateKey.generate() for c in ("k-a", "k-b", "k-c")}


def registry(tmp_path: Path, keys: dict[str, Ed25519PrivateKey] = KEYS) -> Path:
    doc = {
        "clinics": {
            c: {"public_key": signing.public_text(signing.raw_public(k)), "label": f"Clinic {c[-1].upper()}"}
            for c, k in keys.items()
        }
    }
    path = tmp_path / "clinics.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def signed(tmp_path: Path, b: dict | bytes, key: Ed25519PrivateKey | None, name: str) -> Path:
    """Write a bundle (a dict, or raw bytes) and, with ``key``, its detached signature."""
    path = tmp_path / name
    data = b if isinstance(b, bytes) else to_json_text(b).encode()
    path.write_bytes(data)
    if key is not None:
        Path(f"{path}.sig").write_text(signing.signature_text(key, data), encoding="ascii")
    return path


def rehash(b: dict) -> dict:
    b["integrity"] = {"sha256": fnd.integrity_hash(b)}
    return b


def good(tmp_path: Path) -> list[Path]:
    return [
        signed(tmp_path, bundle("k-a", -1.1, 0.4), KEYS["k-a"], "a.json"),
        signed(tmp_path, bundle("k-b", -0.5, 0.3), KEYS["k-b"], "b.json"),
    ]


def refused(capsys, tmp_path: Path, paths: list[Path], named: Path, expect: str, extra=()) -> None:
    out = tmp_path / "out"
    args = ["pool", *map(str, paths), "--registry", str(registry(tmp_path)), "--out", str(out), *extra]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if expect in line]
    assert len(lines) == 1 and str(named) in lines[0], err
    assert "internal error" not in err and "Traceback" not in err
    assert not out.exists()


def test_signed_bundles_of_registered_clinics_pool_with_their_labels(tmp_path, capsys):
    paths = good(tmp_path)
    assert main(["pool", *map(str, paths), "--registry", str(registry(tmp_path)), "--out", str(tmp_path / "o")]) == 0
    r = json.loads((tmp_path / "o" / "pooled.json").read_text())
    assert r["authentication"]["authenticated"] is True
    assert [c["label"] for c in r["clinics"]] == ["Clinic A", "Clinic B"]
    assert r["bundles"][0]["key_fingerprint"] == signing.fingerprint(signing.raw_public(KEYS["k-a"]))
    html = (tmp_path / "o" / "pooled.html").read_text()
    assert "Clinic A" in html and "Authenticated:" in html
    assert "not authenticated" not in capsys.readouterr().out


def test_tampered_bundle_with_recomputed_hash_is_refused(tmp_path, capsys):
    b = bundle("k-c", -0.8, 0.5)
    path = signed(tmp_path, b, KEYS["k-c"], "c.json")
    b["primary"]["estimate"] = -2.5  # edited after signing, integrity hash recomputed
    path.write_text(to_json_text(rehash(b)))
    refused(capsys, tmp_path, [*good(tmp_path), path], path, "signature does not match the content")


def test_unknown_key_is_refused(tmp_path, capsys):
    path = signed(tmp_path, bundle("k-c", -0.8, 0.5), Ed25519PrivateKey.generate(), "c.json")
    refused(capsys, tmp_path, [*good(tmp_path), path], path, "signed by an unknown key")


def test_clinic_resent_under_a_new_id_is_refused(tmp_path, capsys):
    path = signed(tmp_path, bundle("k-z", -1.1, 0.4), KEYS["k-a"], "z.json")
    refused(capsys, tmp_path, [*good(tmp_path), path], path, "registered to clinic 'k-a'")


def test_one_key_signing_two_bundles_is_refused(tmp_path, capsys):
    paths = good(tmp_path)
    copy = signed(tmp_path, bundle("k-a", -1.0, 0.4), KEYS["k-a"], "a-again.json")
    refused(capsys, tmp_path, [*paths, copy], copy, "signed with the same key as")


def test_unsigned_bundle_is_refused_with_a_registry(tmp_path, capsys):
    path = signed(tmp_path, bundle("k-c", -0.8, 0.5), None, "c.json")
    refused(capsys, tmp_path, [*good(tmp_path), path], path, "not signed")


def test_without_registry_pool_needs_allow_unsigned_and_says_so(tmp_path, capsys):
    paths = good(tmp_path)
    assert main(["pool", *map(str, paths), "--out", str(tmp_path / "o")]) == 2
    assert "no --registry" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["pool", *map(str, paths), "--allow-unsigned", "--out", str(tmp_path / "o")]) == 0
    assert "not authenticated" in capsys.readouterr().out
    assert "Not authenticated:" in (tmp_path / "o" / "pooled.html").read_text()
    assert json.loads((tmp_path / "o" / "pooled.json").read_text())["authentication"]["authenticated"] is False


def _set(path: str, value):
    def edit(b: dict) -> None:
        *parents, last = path.split(".")
        target = b
        for p in parents:
            target = target[p]
        target[last] = value

    return edit


IMPOSSIBLE = {
    "negative_se": (_set("primary.se", -0.4), "primary.se is -0.4"),
    "tiny_se": (_set("primary.se", 1e-300), "primary.se is 1e-300; an SE must be at least 1e-06"),
    "negative_df": (_set("primary.df", -3.0), "primary.df is -3; degrees of freedom"),
    "p_above_1": (_set("primary.p_value", 7.5), "primary.p_value is 7.5"),
    "inverted_ci": (_set("primary.ci_low", 5.0), "primary: ci_low 5 is above ci_high"),
    "estimate_outside_ci": (_set("primary.estimate", 3.0), "primary: estimate 3 lies outside"),
    "huge_estimate": (_set("chronicity.estimate", 1e308), "chronicity.estimate is 1e+308"),
    "future_period": (_set("period.to", "2999-12"), "period: to 2999-12 is in the future"),
    "period_backwards": (_set("period.from", "2025-12"), "period: from 2025-12 is after to 2025-06"),
    "small_count": (_set("primary.n_clients", 3), "primary.n_clients is 3, below this network's min_cell 5"),
    "no_n_clients": (_set("primary.n_clients", None), "primary.n_clients is missing"),
    "declared_min_cell_1": (_set("min_cell", 1), "min_cell is 1"),
    "free_text_code_version": (_set("software.code_version", "Dr Jane Roe, 12 High St"), "software.code_version"),
    "free_text_measure": (_set("compatibility.measure", "Jane Roe 12 High St"), "compatibility.measure"),
}


@pytest.mark.parametrize("case", sorted(IMPOSSIBLE))
def test_impossible_numbers_and_free_text_are_refused(tmp_path, capsys, case):
    edit, expect = IMPOSSIBLE[case]
    b = bundle("k-c", -0.8, 0.5)
    edit(b)
    path = signed(tmp_path, rehash(b), KEYS["k-c"], "c.json")  # a registered clinic sends nonsense, signed
    refused(capsys, tmp_path, [*good(tmp_path), path], path, expect)


RAW = {
    "duplicate_key": (lambda t: t.replace('"clinic_id": "k-c"', '"clinic_id": "k-c", "clinic_id": "k-a"'), "duplicate"),
    "nan": (lambda t: t.replace('"se": 0.5', '"se": NaN', 1), "NaN is not a number"),
    "infinity": (lambda t: t.replace('"se": 0.5', '"se": Infinity', 1), "Infinity is not a number"),
    "overflow": (lambda t: t.replace('"se": 0.5', '"se": 1e400', 1), "overflows to infinity"),
    "deep_nesting": (lambda t: t[:-2] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}\n", "nested more than 16"),
    "nesting_20": (lambda t: t[:-2] + ', "x": ' + "[" * 20 + "]" * 20 + "}\n", "nested more than 16"),
    "oversize": (lambda t: t[:-2] + ', "pad": "' + "x" * 1_100_000 + '"}\n', "larger than 1 MB"),
}


@pytest.mark.parametrize("case", sorted(RAW))
def test_malformed_json_is_refused_before_pooling(tmp_path, capsys, case):
    change, expect = RAW[case]
    text = change(to_json_text(bundle("k-c", -0.8, 0.5)))
    path = signed(tmp_path, text.encode(), KEYS["k-c"], "c.json")
    refused(capsys, tmp_path, [*good(tmp_path), path], path, expect)


def test_out_naming_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "report.txt"
    target.write_text("keep me")
    code = main(["pool", *map(str, good(tmp_path)), "--registry", str(registry(tmp_path)), "--out", str(target)])
    err = capsys.readouterr().err
    assert code == 2 and "--out names an existing file" in err and str(target) in err, err
    assert target.read_text() == "keep me"


def test_min_cell_below_5_is_refused_by_pool(tmp_path, capsys):
    args = ["pool", *map(str, good(tmp_path)), "--allow-unsigned", "--min-cell", "1", "--out", str(tmp_path / "o")]
    assert main(args) == 2 and "min_cell 1 is below 5" in capsys.readouterr().err


def test_free_text_in_a_bundle_never_reaches_the_pooled_outputs(tmp_path):
    b = bundle("k-c", -0.8, 0.5)
    secret = "Jane Roe, 12 High Street"
    b["primary"]["formula"] = secret
    b["primary"]["reason"] = secret
    b["responders"]["definition"] = secret
    b["secondary"] = {"gee": {"status": secret, "exploratory": True, "method": secret}}
    path = signed(tmp_path, rehash(b), KEYS["k-c"], "c.json")
    code = main(
        [
            "pool",
            *map(str, [*good(tmp_path), path]),
            "--registry",
            str(registry(tmp_path)),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 0
    for name in ("pooled.json", "pooled.html", "forest.svg"):
        assert "Jane Roe" not in (tmp_path / "o" / name).read_text(), name


def test_registry_with_one_key_for_two_clinics_is_refused(tmp_path, capsys):
    reg = registry(tmp_path, {"k-a": KEYS["k-a"], "k-b": KEYS["k-a"]})
    code = main(["pool", *map(str, good(tmp_path)), "--registry", str(reg), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "clinics.k-b has the same public key as clinics.k-a" in err and str(reg) in err


def test_signing_key_is_private_and_its_public_half_is_written(tmp_path, capsys):
    key = tmp_path / "keys" / "signing.key"
    assert main(["signing-key", "--out", str(key)]) == 0
    out = capsys.readouterr().out
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    pub = Path(f"{key}.pub").read_text()
    public = signing.parse_public(pub.splitlines()[1])
    assert public == signing.raw_public(signing.load_signing_key(key)) and signing.fingerprint(public) in out
    assert main(["signing-key", "--out", str(key)]) == 2 and "already exists" in capsys.readouterr().err


def test_signing_key_inside_a_git_checkout_is_refused(tmp_path, capsys):
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    assert main(["signing-key", "--out", str(tmp_path / "repo" / "signing.key")]) == 2
    assert "git work tree" in capsys.readouterr().err and not (tmp_path / "repo" / "signing.key").exists()


def test_report_signs_the_bundle_and_drops_a_stale_signature(tmp_path):
    outputs = {
        "therapist_html": "<p></p>",
        "peer_figures": {},
        "peer_html": "<p></p>",
        "peer_pdf": b"%PDF",
        "peer_docx": b"PK",
        "findings": bundle("k-a", -1.1, 0.4),
        "clients_csv": pd.DataFrame({"client_id": ["C1"]}),
        "worklist_csv": pd.DataFrame({"client_id": ["C1"]}),
    }
    write_outputs(outputs, tmp_path / "t", tmp_path / "p", KEYS["k-a"])
    data = (tmp_path / "p" / "findings.json").read_bytes()
    parsed = signing.parse_signature((tmp_path / "p" / "findings.json.sig").read_text())
    assert parsed is not None and signing.verify(*parsed, data)
    assert parsed[0] == signing.raw_public(KEYS["k-a"])
    write_outputs(outputs, tmp_path / "t", tmp_path / "p")  # no key: unsigned, and no stale signature left
    assert not (tmp_path / "p" / "findings.json.sig").exists()


def test_a_bad_signing_key_file_is_one_line(tmp_path):
    bad = tmp_path / "signing.key"
    bad.write_text("not a key")
    bad.chmod(0o600)
    with pytest.raises(InputError, match="not an unencrypted Ed25519 signing key"):
        signing.load_signing_key(bad)


def test_same_result_under_a_new_id_is_refused_without_a_registry(tmp_path, capsys):
    paths = good(tmp_path)
    copy = signed(tmp_path, bundle("k-z", -1.1, 0.4), None, "z.json")  # k-a's numbers, another id
    code = main(["pool", *map(str, [*paths, copy]), "--allow-unsigned", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and len([x for x in err.splitlines() if "one clinic's result twice" in x and str(copy) in x]) == 1


def test_signing_key_from_params_or_environment_and_never_readable_by_others(tmp_path):
    assert signing.signing_key_path(None, {signing.SIGNING_KEY_ENV: "/k/env.key"}) == Path("/k/env.key")
    assert signing.signing_key_path("/k/params.key", {signing.SIGNING_KEY_ENV: "/k/env.key"}) == Path("/k/params.key")
    assert signing.signing_key_path(None, {}) is None
    key = tmp_path / "signing.key"
    signing.write_private_key(key, KEYS["k-a"])
    key.chmod(0o644)
    with pytest.raises(InputError, match="readable by other users"):
        signing.load_signing_key(key)
