"""Chunks of filters: cut and padded in one place."""

import pytest

from jaxviz import chunking


def test_chunks_are_cut_and_padded_in_one_place():
  assert chunking.split(range(5), 2) == [[0, 1], [2, 3], [4]]
  assert chunking.pad([4], 3) == [4, 4, 4]
  with pytest.raises(ValueError, match="does not fit"):
    chunking.pad([1, 2, 3], 2)
