"""Class names kept with a run: stored and read back exactly, typed by name or number, and data
whose classes are a subset of the run's matched by name."""

import json

import numpy as np
import pytest

from vaekit.data import classes
from vaekit.errors import ConfigError, DataError

NAME_GRIDS = [
    ("bag", "coat", "sneaker"),
    ("T-shirt/top", "Trouser", "Ankle boot"),
    ("a,b", 'say "hi"', "two\nlines", "tab\there"),
    ("größe", "日本", "emoji 🙂", "\\xff"),
    tuple(str(c) for c in range(10)),
    tuple(f"class {c}" for c in range(300)),
]


@pytest.mark.parametrize("names", NAME_GRIDS)
def test_names_round_trip_through_the_run(tmp_path, names):
    classes.save(tmp_path, names)
    assert classes.load(tmp_path) == names
    record = json.loads((tmp_path / classes.CLASSES_FILE).read_text())
    assert [e["code"] for e in record["classes"]] == list(range(len(names)))


def test_a_run_without_names_numbers_its_classes(tmp_path):
    assert classes.load(tmp_path) is None
    assert classes.names_or_numbers(None, 3) == ("0", "1", "2")


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"classes": [{"code": 1, "name": "a"}]}',
        '{"classes": [{"code": 0, "name": "a"}, {"code": 1, "name": "a"}]}',
        '{"classes": [{"code": 0, "name": ""}]}',
        '{"classes": [{"code": 0, "name": 7}]}',
        '{"classes": {"0": "a"}}',
        '{"names": []}',
        "[]",
    ],
)
def test_a_damaged_record_is_refused_in_one_line(tmp_path, text):
    (tmp_path / classes.CLASSES_FILE).write_text(text)
    with pytest.raises(DataError, match=classes.CLASSES_FILE):
        classes.load(tmp_path)


@pytest.mark.parametrize(
    ("text", "code"), [("bag", 0), ("sneaker", 2), ("1", 1), ("2", 2), ("0", 0)]
)
def test_a_label_is_typed_by_name_or_by_number(text, code):
    assert classes.code_of(text, ("bag", "coat", "sneaker"), 3) == code


@pytest.mark.parametrize("text", ["Bag", "3", "-1", "+1", "1.0", "", "³", " bag"])
def test_a_label_that_is_no_class_names_the_choices(text):
    with pytest.raises(ConfigError, match="bag, coat, sneaker"):
        classes.code_of(text, ("bag", "coat", "sneaker"), 3)


def test_a_name_that_is_a_number_is_taken_as_the_name():
    # Folders named "10", "2", "3" sort as text: code 0 is "10"; typing 2 means the class "2".
    assert classes.code_of("2", ("10", "2", "3"), 3) == 1


def test_data_with_some_of_the_runs_classes_is_recoded_by_name():
    y = np.array([0, 1, 1, 0])
    run = ("bag", "coat", "sandal", "sneaker")
    assert classes.recode(y, ("sneaker", "bag"), run, "d").tolist() == [3, 0, 0, 3]
    assert classes.recode(y, None, run, "d") is y
    with pytest.raises(DataError, match="'hat', which the run does not know"):
        classes.recode(y, ("bag", "hat"), run, "d")


def test_file_names_that_are_not_utf8_become_text():
    assert classes.as_text(b"caf\xe9".decode("utf-8", "surrogateescape")) == "caf\\xe9"
    assert classes.as_text("café") == "café"


def test_names_are_checked():
    with pytest.raises(DataError, match="twice"):
        classes.check_names(["a", "b", "a"], "d")
    with pytest.raises(DataError, match="1 to 255"):
        classes.check_names(["x" * 256], "d")
