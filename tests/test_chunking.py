"""Chunks of filters: cut and padded in one place."""

import pytest

from jaxviz import chunking


def test_chunks_are_cut_and_padded_in_one_place():
  assert chunking.split(range(5), 2) == [[0, 1], [2, 3], [4]]
  assert chunking.pad([4], 3) == [4, 4, 4]
  with pytest.raises(ValueError, match="does not fit"):
    chunking.pad([1, 2, 3], 2)


def test_the_cpu_budget_is_half_of_what_the_host_can_give(tmp_path, monkeypatch):
  # MemAvailable counts the page cache the kernel can drop; free pages alone can be tiny.
  meminfo = tmp_path / "meminfo"
  meminfo.write_text("MemTotal:       24683000 kB\nMemFree:          350000 kB\n"
                     "MemAvailable:   23000000 kB\nBuffers:            1000 kB\n")
  monkeypatch.setattr(chunking, "MEMINFO", meminfo)
  assert chunking.available_host_bytes() == 23000000 * 1024
  assert chunking.default_budget_bytes() == 23000000 * 1024 // 2
  monkeypatch.setattr(chunking, "MEMINFO", tmp_path / "missing")
  assert chunking.available_host_bytes() > 0
