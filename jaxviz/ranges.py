"""Index lists as people type them: `"0,3,10-12"` → `[0, 3, 10, 11, 12]`."""

from __future__ import annotations


def parse_ranges(text: str) -> list[int]:
  """Comma-separated indices and inclusive `lo-hi` ranges; `ValueError` on anything else."""
  indices = []
  for part in filter(None, (p.strip() for p in text.split(","))):
    lo, dash, hi = part.partition("-")
    indices += list(range(int(lo), int(hi) + 1)) if dash else [int(part)]
  return indices
