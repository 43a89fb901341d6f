"""The study file's schema (`wsol.study.spec.StudyFile`): the checks come from the
dataclasses' field types, so a wrong type, an unknown key and a missing required key are
each one line naming the file and the key (and the value)."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from tests.helpers import REPO
from wsol.errors import WSOLError
from wsol.study import StudyFile, load_study
from wsol.study.schema import keys_doc

GOOD = {
    "title": "x",
    "metrics": {"gt_known_loc": "GT-known loc."},
    "rows": [{"label": "r", "where": {"pool": "avg"}}],
    "sweeps": [{"name": "s", "sweep": {"pool": ["avg"]}, "fixed": ["model=tiny_gap"]}],
}


def _error(tmp_path, **change) -> str:
    raw = {**GOOD, **change}
    for key in [k for k, v in raw.items() if v is ...]:
        del raw[key]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(WSOLError) as e:
        load_study(path)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message[len(f"{path}: ") :]


def test_a_good_file_loads(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    study = load_study(path)
    assert study.name == "good" and study.rows[0].label == "r" and study.experiment is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"title": ["a"]}, "title: expected a string, got ['a']"),
        ({"seeds": [0, "a"]}, "seeds[1]: expected an integer, got 'a'"),
        ({"seeds": 3}, "seeds: expected a list of integers or null, got 3"),
        ({"delta": "yes"}, "delta: expected true or false, got 'yes'"),
        ({"requires_env": ["WSOL_CUB"]}, "requires_env: expected a mapping of names to strings"),
        ({"rows": [{"label": "r", "where": ["pool"]}]}, "rows[0].where: expected a mapping"),
        ({"rows": [{"label": "r", "metrics": "gt_known_loc"}]}, "rows[0].metrics: expected a list"),
        (
            {"sweeps": [{"fixed": ["model"]}]},
            "sweeps[0].fixed[0]: expected a string (an override, key=value or ~key), got 'model'",
        ),
        (
            {"sweeps": [{"sweep": {"model": []}}]},
            "sweeps[0].sweep.model: expected a value or a non-empty list of values, got []",
        ),
        ({"metrics": {"a": {"heading": 3}}}, "metrics.a.heading: expected a string, got 3"),
        ({"metrics": {}}, "metrics: expected"),
        (
            {"figures": {"kind": "pies"}},
            "figures.kind: expected one of 'gap_vs_gmp', 'methods', got 'pies'",
        ),
        ({"name": "a b"}, "name: expected a string (letters, digits, _ . -), got 'a b'"),
        (
            {"published": {"r": {"gt_known_loc": [1]}}},
            "published.r.gt_known_loc: expected a string or an integer or a number or null, got [1]",
        ),
    ],
)
def test_a_wrong_type_names_the_file_the_key_and_the_value(tmp_path, change, expected):
    assert _error(tmp_path, **change).startswith(expected)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"colour": "red"}, "unknown key(s) colour; valid: "),
        (
            {"rows": [{"label": "r", "wher": {}}]},
            "rows[0]: unknown key(s) wher; valid: label, metrics, note, where",
        ),
        ({"source": {"paper": "p", "pages": 3}}, "source: unknown key(s) pages; valid: "),
        ({"metrics": {"a": {"metirc": "b"}}}, "metrics.a: unknown key(s) metirc"),
        ({"common": ["data=cub"]}, "unknown key(s) common; valid: "),
    ],
)
def test_an_unknown_key_names_the_file_and_the_key(tmp_path, change, expected):
    message = _error(tmp_path, **change)
    assert message.startswith(expected), message
    if "common" in change:  # the retired keys say what replaced them
        assert "experiment: NAME (conf/experiment/NAME.yaml)" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"title": ...}, "title is missing"),
        ({"rows": ...}, "rows is missing"),
        ({"sweeps": ...}, "sweeps is missing: a study needs at least one sweep"),
        ({"rows": [{"where": {}}]}, "rows[0].label is missing"),
    ],
)
def test_a_missing_key_names_the_file_and_the_key(tmp_path, change, expected):
    assert _error(tmp_path, **change) == expected


def test_what_no_type_can_say_is_checked_too(tmp_path):
    rows = [{"label": "r"}, {"label": "r"}]
    assert _error(tmp_path, rows=rows) == "rows[1].label: 'r' is used by another row"
    assert _error(tmp_path, rows=[{"label": "r", "metrics": ["pxap"]}]) == (
        "rows[0].metrics: pxap not among the study's metrics"
    )
    assert _error(tmp_path, published={"q": {"gt_known_loc": 1}}) == (
        "published.q: no row has this label"
    )
    assert _error(tmp_path, published={"r": {"pxap": 1}}) == (
        "published.r.pxap: not one of the study's metrics"
    )
    assert _error(tmp_path, sweeps=[{"name": "s"}, {"name": "s"}]) == (
        "sweeps[1].name: 's' is used by another sweep"
    )
    assert _error(tmp_path, experiment="nope").startswith("experiment: no experiment config ")
    assert _error(tmp_path, published_from="nope").startswith("published_from: no study file")


def test_the_schema_documents_every_key_of_the_study_files():
    used = set()
    for f in (REPO / "experiments").glob("*.yaml"):
        used |= set(yaml.safe_load(f.read_text()))
    fields = {f.name for f in dataclasses.fields(StudyFile)}
    assert used <= fields
    doc = keys_doc(StudyFile)
    assert len(doc) == len(fields) and all(": " in line for line in doc)
    assert any(line.startswith("title (required; a string)") for line in doc)
