"""Runs that resume: the run manifest and per-chunk result files, kept in `WORKDIR/.jaxviz/`.

    WORKDIR/.jaxviz/run.json                   the run's config (and its hash), the weights' hash
    WORKDIR/.jaxviz/<layer>/plan.json          the layer's requested filters and chunk size
    WORKDIR/.jaxviz/<layer>/chunk-00007.npz    chunk 7's filters, images and activations
    WORKDIR/.jaxviz/<layer>/done.json          written once WORKDIR/<layer>/ holds the outputs
    WORKDIR/.jaxviz/lock                       locked (flock) by the run using the workdir

Every file is written durably (a temporary name, fsync, rename, fsync of the folder), so a
killed run or a power cut leaves whole chunks or none. Every file is checked when read: a
damaged one (empty, truncated, foreign, of the wrong shapes) is reported and its work done
again, never trusted and never a reason to fail. A rerun of the same config computes only the
chunks that are missing; a rerun with another config or other weights is refused, so results of
two runs are never mixed, unless the other run saved nothing yet. One run at a time uses a
workdir (`RunState.lock`). Only one process (process 0 in a multi-host run) reads and writes
these files.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import hashlib
import io
import json
import os
import shlex
import shutil
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np

from jaxviz import chunking
from jaxviz.checkpoint import atomic_write_bytes
from jaxviz.engine import FilterResult
from jaxviz.errors import JaxvizError
from jaxviz.progress import Progress

STATE_DIR = ".jaxviz"
LOCK_FILE = "lock"
FORMAT = 1
CHUNK_DTYPES = {"filters": np.dtype(np.int64), "images": np.dtype(np.float32),
                "activations": np.dtype(np.float32), "robustness": np.dtype(np.float32),
                "woken": np.dtype(np.bool_)}


class DamagedFile(Exception):
  """A resume file that cannot be used; the message says why."""


def canonical_json(value) -> str:
  return json.dumps(value, sort_keys=True, separators=(",", ":"))


def sha256_text(text: str) -> str:
  return hashlib.sha256(text.encode()).hexdigest()


# Config keys added after runs could first be saved, each with the value that does what runs
# saved before it existed did: such a run resumes under that value, and only under that value.
ADDED_KEYS = {"wake": False, "decay_power_start": 1.0, "decay_ramp": 0.0, "crop": 1.0,
              "frame": 0.0, "rescue_slope": 0.0, "average": 0.0, "lift": 0.0,
              "crop_first": False, "wake_passes": "pixel"}


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


def with_added_keys(old: dict, new: dict) -> dict:
  """`old` (a saved run's config record) with each key of `ADDED_KEYS` that it lacks and `new`
  has, at the value that reproduces it."""
  return {**{k: v for k, v in ADDED_KEYS.items() if k in new and k not in old}, **old}


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
  if result.woken is None:  # no second pass ran: no image was woken
    result = result._replace(woken=np.zeros(np.shape(result.activations)[:-1], bool))
  np.savez(buffer, **{key: np.asarray(value, CHUNK_DTYPES[key])
                      for key, value in result._asdict().items()})
  return buffer.getvalue()


def chunk_shapes(image_shape: Sequence[int], steps: int,
                 images_per_filter: int = 1) -> dict[str, tuple[int, ...]]:
  """Each chunk array's shape per filter: images `(H, W, C)`, activations `(steps + 1,)`,
  robustness and woken `()`, each with a leading `D` when filters have D > 1 images."""
  per = (images_per_filter,) if images_per_filter > 1 else ()
  return {"filters": (), "images": (*per, *(int(d) for d in image_shape)),
          "activations": (*per, int(steps) + 1), "robustness": per, "woken": per}


def read_chunk(path: Path, filters: Sequence[int], shapes: dict[str, tuple[int, ...]]
               ) -> FilterResult:
  """The chunk in `path`, checked to hold exactly `filters` and, per filter, arrays of
  `shapes` (`chunk_shapes`) with the dtypes `chunk_bytes` writes.

  Only the structure is checked: NaN or infinite values are results like any other. Raises
  `DamagedFile` naming the problem for a file that is unreadable or holds anything else.
  """
  try:
    data = np.load(path, allow_pickle=False)
  except Exception as e:  # Empty, truncated or foreign files raise many types; all mean damaged.
    raise DamagedFile(f"unreadable: {type(e).__name__}: {e}") from None
  if not isinstance(data, np.lib.npyio.NpzFile):
    raise DamagedFile("not an .npz archive")
  with data:
    if sorted(data.files) != sorted(CHUNK_DTYPES):
      raise DamagedFile(f"holds {sorted(data.files)}, not {sorted(CHUNK_DTYPES)}")
    try:
      arrays = {key: data[key] for key in CHUNK_DTYPES}
    except Exception as e:
      raise DamagedFile(f"unreadable: {type(e).__name__}: {e}") from None
  n = len(filters)
  expected = {key: (n, *shape) for key, shape in shapes.items()}
  for key, array in arrays.items():
    if array.dtype != CHUNK_DTYPES[key] or array.shape != tuple(expected[key]):
      raise DamagedFile(f"{key} are {array.dtype} {array.shape}, expected "
                        f"{CHUNK_DTYPES[key]} {tuple(expected[key])}")
  if arrays["filters"].tolist() != [int(f) for f in filters]:
    raise DamagedFile(f"holds filters {arrays['filters'].tolist()}, not {list(filters)}")
  return FilterResult(**arrays)


def read_json_file(path: Path, valid: Callable[[object], bool]):
  """The JSON value in `path`, None when there is no such file; raises `DamagedFile` when it is
  unreadable or `valid(value)` is false."""
  try:
    text = path.read_text()
  except FileNotFoundError:
    return None
  except (OSError, UnicodeDecodeError) as e:
    raise DamagedFile(f"unreadable: {e}") from None
  try:
    value = json.loads(text)
  except ValueError as e:
    raise DamagedFile(f"not JSON: {e}") from None
  if not valid(value):
    raise DamagedFile(f"unexpected content {text[:80]!r}")
  return value


def valid_plan(plan) -> bool:
  """True for `{"filters": [int, …], "chunk_size": int > 0}`."""
  def whole(v):
    return isinstance(v, int) and not isinstance(v, bool)
  return (isinstance(plan, dict) and isinstance(plan.get("filters"), list)
          and all(whole(f) for f in plan["filters"]) and whole(plan.get("chunk_size"))
          and plan["chunk_size"] > 0)


class RunState:
  """The resume state of one workdir; every method but `release` and `abandon` (no-ops where
  nothing was done) runs on process 0 only.

  Run flow: `lock` → `check_config` → `start` → the layers → `release` (and `abandon` first
  when the run fails). Layer flow: `begin_layer` (which chunks are missing) → `save_chunk` per
  finished chunk → `layer_result` (all chunks, in order) → the caller writes
  `WORKDIR/<layer>/` → `finish_layer`.
  """

  def __init__(self, workdir: str | os.PathLike, report: Callable[[str], None] | None = None):
    """`report` prints a line about damaged files or waiting (default: progress on stderr)."""
    self.workdir = Path(workdir)
    self.root = self.workdir / STATE_DIR
    self.report = report or Progress("resume")
    self.created = False    # this run wrote the manifest
    self.chunks_saved = 0   # chunk files this run saved
    self.shapes: dict[str, dict[str, tuple[int, ...]]] = {}  # layer → chunk_shapes(…)
    self._lock = None

  # --- one run at a time -----------------------------------------------------------------------

  @property
  def lock_path(self) -> Path:
    return self.root / LOCK_FILE

  def lock(self, wait: bool = False) -> None:
    """Locks the workdir for this run (`flock` on `.jaxviz/lock`, which names this process).

    When another run holds it, raises a `JaxvizError` naming that process, or with `wait`
    reports it and waits until it ends. The lock goes with `release` or with the process.
    """
    self.root.mkdir(parents=True, exist_ok=True)
    self._lock = hold_lock(self.lock_path, self.workdir, wait, self.report)

  def release(self) -> None:
    """Unlocks the workdir, if this run locked it."""
    if self._lock is not None:
      self._lock.truncate(0)
      self._lock.close()
      self._lock = None

  def abandon(self) -> None:
    """After a failed run: when this run started the workdir's run and saved no chunk, deletes
    the state it wrote (the manifest above all), so that a corrected command is not taken
    for "a different config"."""
    if self.created and self.chunks_saved == 0:
      self._clear()
      self.created = False

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

  def has_results(self) -> bool:
    """True when some layer of the workdir's run has a chunk file or is done."""
    return any(path.is_file() for pattern in ("*/chunk-*.npz", "*/done.json")
               for path in self.root.glob(pattern))

  def manifest_to_resume(self) -> dict | None:
    """The manifest of the run to resume; None when there is none, or when that run saved
    nothing (it failed or was killed before its first chunk): nothing to resume or to keep."""
    if not self.manifest_path.exists() or not self.has_results():
      return None
    return self.read_manifest()

  def check_config(self, config) -> bool:
    """Refuses a workdir whose run used another config; True when there is a run to resume."""
    manifest = self.manifest_to_resume()
    if manifest is None:
      return False
    record = config_record(config)
    saved = with_added_keys(manifest["config"], record)
    if (manifest["config_sha256"] != sha256_text(canonical_json(record))
        and canonical_json(saved) != canonical_json(record)):
      changes = config_differences(saved, record) or ["(unknown: hash differs)"]
      raise JaxvizError(
          f"workdir {str(self.workdir)!r} holds a run with a different config; it is not mixed "
          f"with this one. Differences (that run → this one): {'; '.join(changes)}. "
          f"Rerun with that run's config to resume it (it is in {self.manifest_path}), choose "
          f"another --workdir, or delete {self.workdir} to start over.")
    return True

  def start(self, config, weights_sha256: str) -> str:
    """Writes the manifest of a new run, or checks the weights of the run being resumed.

    Returns "new" or "resumed". A new run first deletes whatever state a run that saved
    nothing left behind.
    """
    manifest = self.manifest_to_resume()
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
    self._clear()
    atomic_write_bytes(self.manifest_path, (json.dumps(manifest, indent=1) + "\n").encode())
    self.created = True
    return "new"

  def _clear(self) -> None:
    """Deletes the run state, all but the lock."""
    if not self.root.is_dir():
      return
    for path in self.root.iterdir():
      if path.name == LOCK_FILE:
        continue
      if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
      else:
        path.unlink(missing_ok=True)

  # --- layers and chunks ---------------------------------------------------------------------

  def layer_dir(self, layer: str) -> Path:
    return self.root / layer

  def chunk_path(self, layer: str, index: int) -> Path:
    return self.layer_dir(layer) / f"chunk-{index:05d}.npz"

  def begin_layer(self, layer: str, filters: Sequence[int], chunk_size: int,
                  outputs: Sequence[str], image_shape: Sequence[int], steps: int,
                  images_per_filter: int = 1) -> dict:
    """Which chunks of `layer` remain to be computed.

    Returns `{"done": bool, "chunk_size": int, "todo": [chunk index, …]}`: `done` when the
    layer's outputs (`outputs`, file names in `WORKDIR/<layer>/`) are complete; otherwise the
    chunk size of the run being resumed (else `chunk_size`) and the chunks without a valid file.
    A chunk file is valid when it holds its filters' arrays with the shapes of `chunk_shapes`;
    damaged files are reported and deleted.
    """
    folder = self.layer_dir(layer)
    filters = [int(f) for f in filters]
    self.shapes[layer] = chunk_shapes(image_shape, steps, images_per_filter)
    for path in folder.glob(".*.tmp"):  # left by a run killed while writing
      path.unlink(missing_ok=True)
    if self._read(folder / "done.json", lambda v: v == {"done": True}) and all(
        (self.workdir / layer / name).is_file() for name in outputs):
      self._drop_chunks(layer)
      return {"done": True, "chunk_size": chunk_size, "todo": []}
    plan = self._read(folder / "plan.json", valid_plan)
    if not plan or plan["filters"] != filters:
      shutil.rmtree(folder, ignore_errors=True)
      plan = {"filters": filters, "chunk_size": chunk_size}
      atomic_write_bytes(folder / "plan.json", (canonical_json(plan) + "\n").encode())
    chunk_size = plan["chunk_size"]
    (folder / "done.json").unlink(missing_ok=True)
    chunks = chunking.split(filters, chunk_size)
    todo = [i for i, chunk in enumerate(chunks) if self.load_chunk(layer, i, chunk) is None]
    return {"done": False, "chunk_size": chunk_size, "todo": todo}

  def save_chunk(self, layer: str, index: int, result: FilterResult) -> None:
    atomic_write_bytes(self.chunk_path(layer, index), chunk_bytes(result))
    self.chunks_saved += 1

  def load_chunk(self, layer: str, index: int, filters: Sequence[int]) -> FilterResult | None:
    """Chunk `index` of `layer` (after `begin_layer`) if its file exists and holds exactly
    `filters` with the layer's shapes; None otherwise. A file that does not is reported and
    deleted, so its chunk is computed again."""
    path = self.chunk_path(layer, index)
    if not path.exists():
      return None
    try:
      return read_chunk(path, filters, self.shapes[layer])
    except DamagedFile as e:
      self.report(f"damaged resume file {path} ({e}); computing its chunk again")
      path.unlink(missing_ok=True)
      return None

  def layer_result(self, layer: str, filters: Sequence[int], chunk_size: int) -> FilterResult:
    """All chunks of the layer joined in request order: `[N]`, `[N, H, W, C]`, `[N, steps+1]`."""
    parts = []
    for i, chunk in enumerate(chunking.split(filters, chunk_size)):
      part = self.load_chunk(layer, i, chunk)
      if part is None:
        raise JaxvizError(f"chunk {i} of layer {layer!r} is missing from "
                          f"{self.layer_dir(layer)} or damaged; rerun the same command to "
                          "compute it.")
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

  def _read(self, path: Path, valid: Callable[[object], bool]):
    """The JSON value in `path`; None when it is absent or damaged (reported and deleted)."""
    try:
      return read_json_file(path, valid)
    except DamagedFile as e:
      self.report(f"damaged resume file {path} ({e}); starting that part again")
      path.unlink(missing_ok=True)
      return None


def hold_lock(path: Path, workdir: Path, wait: bool, report: Callable[[str], None]):
  """Locks `path` (`flock`) for this process and writes its name there; returns the open
  handle, which holds the lock until it is closed or the process ends.

  When another run holds it, raises a `JaxvizError` naming that process, or with `wait`
  reports it and waits until it ends.
  """
  try:
    handle = open(path, "a+")
  except OSError as e:
    raise JaxvizError(f"cannot create the lock file {path}: {e.strerror or e}. "
                      "Choose a writable --workdir.") from None
  try:
    if not try_flock(handle):
      holder = describe_holder(handle)
      if not wait:
        raise JaxvizError(
            f"workdir {str(workdir)!r} is in use by {holder}; two runs must not share a "
            "workdir. Wait until that run ends (--wait waits for it), or choose another "
            "--workdir.")
      report(f"waiting for {holder} to finish with {workdir}")
      fcntl.flock(handle, fcntl.LOCK_EX)
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(holder_record()) + "\n")
    handle.flush()
  except BaseException:
    handle.close()
    raise
  return handle


def try_flock(handle) -> bool:
  """Takes an exclusive `flock` on open file `handle` without waiting; False when another
  process holds it. Where the filesystem has no locks, goes on unlocked."""
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    return False
  except OSError as e:
    if e.errno in (errno.EAGAIN, errno.EACCES):
      return False
    if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
      raise
  return True


def holder_record() -> dict:
  """What the lock file says about the run holding it."""
  return {"pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join(sys.argv),
          "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def describe_holder(handle) -> str:
  """`"process 4242 on host-a (jaxviz gallery …), running since …"` from the lock file."""
  handle.seek(0)
  try:
    record = json.loads(handle.read())
    return (f"process {record['pid']} on {record['host']} ({record['command']}), running since "
            f"{record['since']}")
  except (ValueError, KeyError, TypeError):
    return "another process (it has not written its name into the lock file yet)"
