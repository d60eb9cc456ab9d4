import pytest

from jaxviz.errors import JaxvizError
from jaxviz.ranges import parse_indices, split_names


def test_indices_as_people_type_them():
  assert parse_indices("all", 4) == [0, 1, 2, 3]
  assert parse_indices("0, 2,5-7", 10) == [0, 2, 5, 6, 7]
  assert parse_indices(" 3 - 4 ", 10) == [3, 4]
  assert parse_indices([3, 1], 4) == [3, 1]
  assert parse_indices(2, 4) == [2]


@pytest.mark.parametrize("value, match", [
    ("49,50", "filter index 50 is out of range: the layer has 50 filters \\(0–49\\)"),
    ("0-99999999999", "filter index 99999999999 is out of range"),  # refused before expanding
    ("first", "filters must be 'all' or indices like '0,3,10-19'; got 'first'"),
    ("-3", "indices like"),
    ("1-", "indices like"),
    ("1.5", "indices like"),
    ("7-3", "range '7-3' runs backwards; write it as '3-7'"),
    ("", "no filters requested"),
    (" , ", "no filters requested"),
    ([], "no filters requested"),
    ([-1], "filter index -1 is out of range"),
    (["a"], "indices like"),
    (True, "indices like"),
])
def test_bad_indices_name_the_problem(value, match):
  with pytest.raises(JaxvizError, match=match):
    parse_indices(value, 50)


def test_wording_follows_what_is_indexed():
  with pytest.raises(JaxvizError, match="class index 10 is out of range: the model has 10 "
                     "classes \\(0–9\\)"):
    parse_indices("10", 10, name="classes", unit="class", owner="the model")


def test_split_names():
  assert split_names(" conv2d_1, ,conv2d_2,") == ["conv2d_1", "conv2d_2"]
  assert split_names(["a ", "", "b"]) == ["a", "b"]
  assert split_names("") == []

