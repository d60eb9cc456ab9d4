"""Runs that resume: the run manifest and per-chunk result files, kept in `WORKDIR/.jaxviz/`.

    WORKDIR/.jaxviz/run.json                   the run's config (and its hash), the weights' hash
    WORKDIR/.jaxviz/<layer>/plan.json          the layer's requested filters and chunk size
    WORKDIR/.jaxviz/<layer>/chunk-00007.npz    chunk 7's filters, images and activations
    WORKDIR/.jaxviz/<layer>/done.json          written once WORKDIR/<layer>/ holds the outputs

Every file is written to a temporary name and renamed into place, so a killed run leaves whole
chunks or none. A rerun of the same config computes only the chunks that are missing; a rerun
with another config or other weights is refused, so results of two runs are never mixed.
Only one process (process 0 in a multi-host run) reads and writes these files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import shutil
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from jaxviz.checkpoint import atomic_write_bytes
from jaxviz.engine import FilterResult
from jaxviz.errors import JaxvizError

STATE_DIR = ".jaxviz"
FORMAT = 1

# For tests only: the process kills itself (SIGKILL, like `kill -9`) right after saving this
# many chunk files, to check that a rerun resumes a run that died mid-layer.
CRASH_AFTER_CHUNKS_ENV = "JAXVIZ_TEST_CRASH_AFTER_CHUNKS"


def canonical_json(value) -> str:
  return json.dumps(value, sort_keys=True, separators=(",", ":"))


def sha256_text(text: str) -> str:
  return hashlib.sha256(text.encode()).hexdigest()


def config_record(config) -> dict:
  """The config as plain JSON values (what `run.json` stores and compares)."""
  return json.loads(canonical_json(config.to_dict()))


def weights_digest(params) -> str:
  """sha256 of every weight array (layer path, dtype, shape and bytes), in a fixed order."""
  digest = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  for path, leaf in sorted(leaves, key=lambda item: jax.tree_util.keystr(item[0])):
    array = np.ascontiguousarray(np.asarray(leaf))
    digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype.str}|{array.shape}|".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
  """`["steps: 20 → 5", …]` for every key whose value differs (nested keys dotted)."""
  lines = []
  for key in sorted(set(old) | set(new)):
    name = f"{prefix}{key}"
    a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
    if isinstance(a, dict) and isinstance(b, dict):
      lines += config_differences(a, b, f"{name}.")
    elif a != b:
      lines.append(f"{name}: {a!r} → {b!r}")
  return lines


def chunk_bytes(result: FilterResult) -> bytes:
  buffer = io.BytesIO()
  np.savez(buffer, filters=np.asarray(result.filters, np.int64),
           images=np.asarray(result.images, np.float32),
           activations=np.asarray(result.activations, np.float32),
           robustness=np.asarray(result.robustness, np.float32))
  return buffer.getvalue()


class RunState:
  """The resume state of one workdir; every method runs on process 0 only.

  Layer flow: `begin_layer` (which chunks are missing) → `save_chunk` per finished chunk →
  `layer_result` (all chunks, in order) → the caller writes `WORKDIR/<layer>/` → `finish_layer`.
  """

  def __init__(self, workdir: str | os.PathLike):
    self.workdir = Path(workdir)
    self.root = self.workdir / STATE_DIR
    self.saved = 0

  # --- the run manifest ----------------------------------------------------------------------

  @property
  def manifest_path(self) -> Path:
    return self.root / "run.json"

  def read_manifest(self) -> dict | None:
    if not self.manifest_path.exists():
      return None
    try:
      manifest = json.loads(self.manifest_path.read_text())
      manifest["config"], manifest["config_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
      raise JaxvizError(f"{self.manifest_path} is unreadable, so this workdir's run cannot be "
                        f"resumed safely. Choose another --workdir, or delete {self.workdir} "
                        "to start over.") from None
    return manifest

  def check_config(self, config) -> bool:
    """Refuses a workdir whose run used another config; True when there is a run to resume."""
    manifest = self.read_manifest()
    if manifest is None:
      return False
    record = config_record(config)
    if manifest["config_sha256"] != sha256_text(canonical_json(record)):
      changes = config_differences(manifest["config"], record) or ["(unknown: hash differs)"]
      raise JaxvizError(
          f"workdir {str(self.workdir)!r} holds a run with a different config; it is not mixed "
          f"with this one. Differences (that run → this one): {'; '.join(changes)}. "
          f"Rerun with that run's config to resume it (it is in {self.manifest_path}), choose "
          f"another --workdir, or delete {self.workdir} to start over.")
    return True

  def start(self, config, weights_sha256: str) -> str:
    """Writes the manifest of a new run, or checks the weights of the run being resumed.

    Returns "new" or "resumed".
    """
    manifest = self.read_manifest()
    if manifest is not None:
      self.check_config(config)
      if manifest.get("weights_sha256") != weights_sha256:
        raise JaxvizError(
            f"the weights differ from those the run in workdir {str(self.workdir)!r} started "
            f"with (sha256 {str(manifest.get('weights_sha256'))[:12]}… then, "
            f"{weights_sha256[:12]}… now), so its chunks cannot be reused. Pass the same "
            f"weights, choose another --workdir, or delete {self.workdir} to start over.")
      return "resumed"
    record = config_record(config)
    manifest = {"format": FORMAT, "config": record,
                "config_sha256": sha256_text(canonical_json(record)),
                "weights_sha256": weights_sha256}
    atomic_write_bytes(self.manifest_path, (json.dumps(manifest, indent=1) + "\n").encode())
    return "new"

  # --- layers and chunks ---------------------------------------------------------------------

  def layer_dir(self, layer: str) -> Path:
    return self.root / layer

  def chunk_path(self, layer: str, index: int) -> Path:
    return self.layer_dir(layer) / f"chunk-{index:05d}.npz"

  def begin_layer(self, layer: str, filters: Sequence[int], chunk_size: int,
                  outputs: Sequence[str]) -> dict:
    """Which chunks of `layer` remain to be computed.

    Returns `{"done": bool, "chunk_size": int, "todo": [chunk index, …]}`: `done` when the
    layer's outputs (`outputs`, file names in `WORKDIR/<layer>/`) are complete; otherwise the
    chunk size of the run being resumed (else `chunk_size`) and the chunks without a valid file.
    """
    folder = self.layer_dir(layer)
    filters = [int(f) for f in filters]
    if (folder / "done.json").exists() and all(
        (self.workdir / layer / name).is_file() for name in outputs):
      self._drop_chunks(layer)
      return {"done": True, "chunk_size": chunk_size, "todo": []}
    plan = self._read_json(folder / "plan.json")
    if not plan or plan.get("filters") != filters or plan.get("chunk_size", 0) <= 0:
      shutil.rmtree(folder, ignore_errors=True)
      plan = {"filters": filters, "chunk_size": chunk_size}
      atomic_write_bytes(folder / "plan.json", (canonical_json(plan) + "\n").encode())
    chunk_size = plan["chunk_size"]
    (folder / "done.json").unlink(missing_ok=True)
    chunks = plan_chunks(filters, chunk_size)
    todo = [i for i, chunk in enumerate(chunks) if self.load_chunk(layer, i, chunk) is None]
    return {"done": False, "chunk_size": chunk_size, "todo": todo}

  def save_chunk(self, layer: str, index: int, result: FilterResult) -> None:
    atomic_write_bytes(self.chunk_path(layer, index), chunk_bytes(result))
    self.saved += 1
    limit = os.environ.get(CRASH_AFTER_CHUNKS_ENV)
    if limit and self.saved >= int(limit):
      os.kill(os.getpid(), signal.SIGKILL)

  def load_chunk(self, layer: str, index: int, filters: Sequence[int]) -> FilterResult | None:
    """Chunk `index` if its file exists and holds exactly `filters`; None otherwise (a file
    that does not match is deleted)."""
    path = self.chunk_path(layer, index)
    if not path.exists():
      return None
    try:
      with np.load(path) as data:
        result = FilterResult(data["filters"], data["images"], data["activations"],
                              data["robustness"])
      ok = (result.filters.tolist() == list(filters) and len(result.images) == len(filters)
            and len(result.activations) == len(filters)
            and len(result.robustness) == len(filters))
    except (OSError, ValueError, KeyError):
      ok = False
    if not ok:
      path.unlink(missing_ok=True)
      return None
    return result

  def layer_result(self, layer: str, filters: Sequence[int], chunk_size: int) -> FilterResult:
    """All chunks of the layer joined in request order: `[N]`, `[N, H, W, C]`, `[N, steps+1]`."""
    parts = []
    for i, chunk in enumerate(plan_chunks(filters, chunk_size)):
      part = self.load_chunk(layer, i, chunk)
      if part is None:
        raise JaxvizError(f"chunk {i} of layer {layer!r} is missing from "
                          f"{self.layer_dir(layer)}; rerun the same command to compute it.")
      parts.append(part)
    return FilterResult(*(np.concatenate([getattr(p, name) for p in parts])
                          for name in FilterResult._fields))

  def finish_layer(self, layer: str) -> None:
    """Marks the layer done (its outputs are in place) and deletes its chunk files."""
    atomic_write_bytes(self.layer_dir(layer) / "done.json", b'{"done": true}\n')
    self._drop_chunks(layer)

  def _drop_chunks(self, layer: str) -> None:
    for path in self.layer_dir(layer).glob("chunk-*.npz"):
      path.unlink(missing_ok=True)

  @staticmethod
  def _read_json(path: Path) -> dict | None:
    try:
      return json.loads(path.read_text())
    except (OSError, ValueError):
      return None


def plan_chunks(filters: Sequence[int], chunk_size: int) -> list[list[int]]:
  """Consecutive chunks of `chunk_size` filters; the last may be short."""
  filters = list(filters)
  return [filters[i:i + chunk_size] for i in range(0, len(filters), chunk_size)]
