"""Every local device and many hosts, through JAX's own sharding and multi-host runtime.

Devices. A process runs D chunks at once, one per local device: the chunks, each padded to the
chunk size, are laid end to end and split along the "filters" axis of a mesh of the local devices
(`NamedSharding(mesh, P("filters"))`), so one compiled call gives every device exactly the batch a
single-device run computes for its chunk. As every filter draws its noise from its own key
(`jaxviz.engine`; docs/scale.md, "What stays the same"), a filter's image is then bit-for-bit
the same on 1 device or 8, on 1 host or 64. A single process on a CPU host split into one
device per core (`jaxviz.host_devices`) instead shares each chunk among its devices, whose
groups of filters may then be smaller: the same images to float rounding.

Hosts. `initialize` starts `jax.distributed` (flags, or JAX's own cluster detection on Cloud TPU,
SLURM, Open MPI), within a bounded time: a process that cannot reach the coordinator, or whose
partners never join, stops with a message instead of hanging. The missing chunks are dealt out
in rounds: in each round process p takes D of them; the results are gathered with
`multihost_utils.process_allgather`, and process 0, the only one that touches the workdir, saves
them. Decisions that read the workdir are made by process 0 and broadcast (`on_leader`), so every
process runs the same rounds.
"""

from __future__ import annotations

import atexit
import hashlib
import ipaddress
import json
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import jax
import numpy as np
from jax._src import distributed as jax_distributed  # its client: which processes are alive
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from jaxviz import chunking
from jaxviz.engine import FILTER_AXIS, FilterResult, local_sharding
from jaxviz.errors import JaxvizError

RESULT_ARRAYS = ("images", "activations", "robustness")  # a chunk's per-filter arrays
MODES = ("auto", "on", "off")
INIT_TIMEOUT = 60.0   # seconds for all processes to join, by default (--init_timeout)
# Seconds without a heartbeat after which a process counts as dead and the others stop
# (--heartbeat_timeout); JAX's own default, 100 s, leaves a survivor waiting that long.
HEARTBEAT_TIMEOUT = 20.0
LEAVE_TIMEOUT = 30.0  # seconds process 0 waits at exit for the others to leave
JAX_TIMEOUT_MARGIN = 30  # JAX's own start-up limit (it aborts the process) comes this much later


# --- the multi-host runtime ----------------------------------------------------------------------

def launched_as_cluster() -> bool:
  """True when a launcher started several processes of this job: SLURM (`srun` with more than
  one task) or Open MPI (`mpirun -n N`, N > 1)."""
  env = os.environ
  slurm = "SLURM_JOB_ID" in env and int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1"))) > 1
  return slurm or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1


def initialize(mode: str = "auto", coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               local_device_ids: Sequence[int] | None = None, timeout: float = INIT_TIMEOUT,
               progress: Callable[[str], None] | None = None,
               heartbeat_timeout: float = HEARTBEAT_TIMEOUT) -> bool:
  """Starts JAX's multi-host runtime, before any JAX computation; returns whether it did.

  Args:
    mode: "on": always call `jax.distributed.initialize`, JAX filling what is not given from the
      cluster (Cloud TPU, SLURM, Open MPI, Kubernetes); "off": never, one process; "auto": when
      any address, count or id is given, or when `launched_as_cluster()`.
    coordinator_address: "host:port" of process 0's coordinator, the same for every process.
    num_processes: how many processes take part.
    process_id: this process, 0 … num_processes - 1.
    local_device_ids: the local devices this process uses (default: all of them).
    timeout: seconds for every process to join. A process other than 0 first waits for the
      coordinator's port to open and raises a `JaxvizError` if it does not; past the limit a
      process still waiting for its partners prints why and exits with status 2 (JAX's runtime
      cannot be interrupted, and would abort later with a stack trace).
    progress: prints a line when the runtime starts.
    heartbeat_timeout: seconds without news from a process after which the others count it as
      dead and stop, instead of waiting for it.
  """
  if mode not in MODES:
    raise JaxvizError(f"distributed must be one of {', '.join(MODES)}; got {mode!r}")
  for name, value in (("init_timeout", timeout), ("heartbeat_timeout", heartbeat_timeout)):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        math.isfinite(value) and 0 < value <= 86400):
      raise JaxvizError(f"{name} must be a number of seconds > 0 (at most a day, 86400), "
                        f"got {value!r}")
  given = (coordinator_address, num_processes, process_id, local_device_ids)
  if mode == "off" or (mode == "auto" and all(v is None for v in given)
                       and not launched_as_cluster()):
    return False
  if num_processes is not None and num_processes < 1:
    raise JaxvizError(f"num_processes must be ≥ 1, got {num_processes}")
  if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
    raise JaxvizError(f"process_id must be in 0 … {num_processes - 1}, got {process_id}")
  deadline = time.monotonic() + timeout
  host = parse_address(coordinator_address)[0] if coordinator_address else None
  if progress:
    progress(f"starting the multi-host runtime: process {_or(process_id, 'from the cluster')} of "
             f"{_or(num_processes, '(from the cluster)')}, coordinator "
             f"{_or(coordinator_address, '(from the cluster)')}; waiting up to {timeout:g} s")
  if coordinator_address and process_id:
    wait_for_coordinator(coordinator_address, deadline, timeout)
  left = max(deadline - time.monotonic(), 1.0)
  watchdog = threading.Timer(left, _start_up_timed_out, args=(
      timeout, coordinator_address, num_processes))
  watchdog.daemon = True
  watchdog.start()
  # A partner that dies then makes the next collective raise (see `_collective`) instead of
  # aborting this process with a stack trace; `_leave_in_order` keeps the exit orderly.
  jax.config.update("jax_enable_recoverability", True)
  try:
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes,
        process_id=process_id, local_device_ids=local_device_ids,
        initialization_timeout=math.ceil(left) + JAX_TIMEOUT_MARGIN,
        heartbeat_timeout_seconds=math.ceil(heartbeat_timeout),
        coordinator_bind_address=coordinator_address if host and is_loopback(host) else None)
  except (ValueError, RuntimeError) as e:
    raise JaxvizError(
        f"cannot start JAX's multi-host runtime: {e}. Give --coordinator_address HOST:PORT, "
        "--num_processes N and --process_id I (the same address and N on every process), or "
        "run where JAX detects the cluster (Cloud TPU, SLURM, Open MPI).") from None
  finally:
    watchdog.cancel()
  atexit.register(_leave_in_order)
  return True


def _leave_in_order() -> None:
  """At exit, process 0 (which hosts JAX's coordination service) waits until the others have
  left, at most `LEAVE_TIMEOUT` seconds: with recoverable processes JAX no longer holds every
  process at a shutdown barrier, and a process that loses the service while leaving aborts."""
  client = jax_distributed.global_state.client
  if client is None or process_index() != 0 or process_count() == 1:
    return

  def wait():  # returns once every other process has shut down (or asks the same)
    try:
      client.get_live_nodes(list(range(process_count())))
    except Exception:  # the service is gone or cannot say: nothing left to wait for
      pass

  waiter = threading.Thread(target=wait, daemon=True)
  waiter.start()
  waiter.join(LEAVE_TIMEOUT)


def _or(value, default: str) -> str:
  return default if value is None else str(value)


def parse_address(address: str) -> tuple[str, int]:
  """`"10.0.0.1:8476"` or `"[::1]:8476"` → `(host, port)`."""
  host, colon, port = address.rpartition(":")
  host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
  if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise JaxvizError(f"coordinator_address must be HOST:PORT (e.g. 10.0.0.1:8476), got "
                      f"{address!r}")
  return host, int(port)


def is_loopback(host: str) -> bool:
  """True for `localhost`, 127.x.x.x and ::1: a coordinator only this machine can reach."""
  try:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False


def wait_for_coordinator(address: str, deadline: float, timeout: float) -> None:
  """Waits until the coordinator's TCP port at `address` accepts connections (process 0 may
  start later than this one); raises a `JaxvizError` naming it when `deadline` passes first."""
  host, port = parse_address(address)
  problem = "no answer"
  while True:
    try:
      with socket.create_connection((host, port), timeout=min(2.0, timeout)):
        return
    except socket.gaierror as e:
      raise JaxvizError(f"cannot resolve the coordinator's host {host!r} "
                        f"(--coordinator_address {address}): {e.strerror or e}.") from None
    except OSError as e:
      problem = e.strerror or str(e) or type(e).__name__
    if time.monotonic() + 0.25 >= deadline:
      raise JaxvizError(
          f"cannot reach the coordinator at {address} (process 0) within {timeout:g} s: "
          f"{problem}. Start process 0 with the same --coordinator_address (it opens that port), "
          "check the host, port and firewall, or allow more time with --init_timeout SECONDS.")
    time.sleep(0.25)


def _start_up_timed_out(timeout: float, coordinator_address: str | None,
                        num_processes: int | None) -> None:
  """Ends the process (status 2) when `jax.distributed.initialize` is still waiting."""
  print(f"jaxviz: error: the multi-host runtime did not start within {timeout:g} s: not all "
        f"{_or(num_processes, 'the')} processes joined the coordinator at "
        f"{_or(coordinator_address, '(detected by JAX)')}. Start every process with the same "
        "--coordinator_address and --num_processes and its own --process_id, or allow more "
        "time with --init_timeout SECONDS.", file=sys.stderr, flush=True)
  os._exit(2)


def process_index() -> int:
  return jax.process_index()


def process_count() -> int:
  return jax.process_count()


def is_leader() -> bool:
  """True on process 0, the one that reads and writes the workdir."""
  return process_index() == 0


def describe() -> str:
  """`"2 processes × 4 cpu devices"`: the layout this run computes on."""
  devices = jax.local_devices()
  count = process_count()
  return (f"{count} process{'es' if count > 1 else ''} × {len(devices)} {devices[0].platform} "
          f"device{'s' if len(devices) > 1 else ''}")


# --- agreeing across processes -------------------------------------------------------------------

def _collective(fn):
  """Runs a collective `fn`; when it fails because a partner process has stopped (killed, its
  host lost), raises a `JaxvizError` that says what to do."""
  def run(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except (jax.errors.JaxRuntimeError, ValueError) as e:  # Gloo's failures arrive as either
      if process_count() == 1:
        raise
      raise JaxvizError(
          f"another process stopped, so this one stops too ({str(e).splitlines()[0]}). Start "
          "the same command again on every process: it resumes from the chunks already "
          "saved.") from None
  return run


_gather = _collective(multihost_utils.process_allgather)
_broadcast = _collective(multihost_utils.broadcast_one_to_all)


def broadcast_json(value=None):
  """Process 0's `value` (anything JSON can hold) on every process; other processes pass None."""
  if process_count() == 1:
    return value
  text = json.dumps(value).encode() if is_leader() else b""
  size = int(_broadcast(np.array([len(text)], np.int64))[0])
  data = np.frombuffer(text, np.uint8) if is_leader() else np.zeros(size, np.uint8)
  data = _broadcast(data)
  return json.loads(np.asarray(data, np.uint8).tobytes().decode())


def on_leader(fn: Callable[[], object]):
  """Runs `fn` on process 0 only and returns its result (JSON values) on every process.

  When `fn` raises, every process raises a `JaxvizError` with its message, so no process waits
  for a partner that has given up.
  """
  if process_count() == 1:
    return fn()
  failure = None
  if is_leader():
    try:
      payload = {"value": fn()}
    except Exception as e:  # Every process must hear of it; process 0 re-raises the original.
      failure, payload = e, {"error": str(e) if isinstance(e, JaxvizError)
                             else f"process 0 failed: {type(e).__name__}: {e}"}
  else:
    payload = None
  payload = broadcast_json(payload)
  if failure is not None:
    raise failure
  if "error" in payload:
    raise JaxvizError(payload["error"])
  return payload["value"]


def on_every_process(fn: Callable[[], object]):
  """Runs `fn` on every process; when it raises a `JaxvizError` on any of them, every process
  raises (that one with its own message), instead of the others waiting for it."""
  if process_count() == 1:
    return fn()
  try:
    value, error = fn(), None
  except JaxvizError as e:
    value, error = None, e
  failed = np.asarray(_gather(
      np.array([error is not None], np.int32))).reshape(-1)
  if error is not None:
    raise error
  if failed.any():
    raise JaxvizError(f"process(es) {np.flatnonzero(failed).tolist()} failed; see their "
                      "messages.")
  return value


def check_agreement(what: str, value: str) -> None:
  """Raises on every process unless all processes hold the same `value` (e.g. a hash) for `what`."""
  if process_count() == 1:
    return
  digest = np.frombuffer(hashlib.sha256(value.encode()).digest(), np.uint8)
  everyone = np.asarray(_gather(digest))
  differ = [p for p in range(len(everyone)) if not np.array_equal(everyone[p], everyone[0])]
  if differ:
    raise JaxvizError(f"processes {differ} have a different {what} than process 0. Start every "
                      "process with the same command, config and weights file.")


# --- dealing chunks to devices and processes -----------------------------------------------------

def filter_mesh():
  """A 1-D mesh of this process's devices along the "filters" axis."""
  return jax.sharding.Mesh(np.array(jax.local_devices()), (FILTER_AXIS,))


def deal(todo: Sequence[int], processes: int, devices: int) -> list[list[list[int]]]:
  """Splits chunk indices `todo` into rounds: `rounds[r][p]` are the (at most `devices`) chunks
  process p computes in round r, one per device. Every process takes part in every round."""
  per_round = processes * devices
  return [[list(todo[start + p * devices:start + (p + 1) * devices]) for p in range(processes)]
          for start in range(0, len(todo), per_round)]


def run_slots(engine, chunks: Sequence[Sequence[int]], chunk_size: int, seed: int,
              mesh) -> dict[str, np.ndarray]:
  """One compiled call computing `chunks` (at most one per device of `mesh`).

  Each chunk is padded to `chunk_size` by repeating its last filter, as a single-device run pads
  it; devices without a chunk repeat the first one. Returns `{"images": [D, chunk_size, H, W,
  C], "activations": [D, chunk_size, steps + 1], "robustness": [D, chunk_size]}` (with an
  image axis after chunk_size when filters have several images), padded rows included.
  """
  devices = mesh.devices.size
  slots = [chunking.pad(c, chunk_size) for c in chunks]
  slots += [slots[0]] * (devices - len(slots))
  sharding = NamedSharding(mesh, PartitionSpec(FILTER_AXIS)) if devices > 1 else None
  result = engine.run_chunk([f for slot in slots for f in slot], seed=seed, sharding=sharding)
  return {name: getattr(result, name).reshape(devices, chunk_size,
                                               *getattr(result, name).shape[1:])
          for name in RESULT_ARRAYS}


def compute_chunks(engine, chunks: Sequence[Sequence[int]], todo: Sequence[int],
                   chunk_size: int, seed: int) -> Iterator[tuple[int, FilterResult]]:
  """Computes chunks `todo` (indices into `chunks`) on every device of every process.

  Yields `(index, FilterResult of that chunk)` for each chunk as its round finishes, on process
  0; other processes yield nothing but must iterate to the end too, since each round ends with
  a gather all processes join.
  """
  mesh = filter_mesh()
  devices, processes, me = mesh.devices.size, process_count(), process_index()
  if processes == 1 and devices > 1 and mesh.devices.flat[0].platform == "cpu":
    # One process on a CPU host split into a device per core (`jaxviz.host_devices`): every
    # chunk is shared by all of them, so a job of a single chunk still uses every core.
    sharding, pad_to = local_sharding(), chunking.round_up(chunk_size, devices)
    for index in todo:
      yield index, engine.run_chunk(chunks[index], seed=seed, pad_to=pad_to, sharding=sharding)
    return
  if processes > 1:  # Rounds gather [devices, chunk_size, …] from everyone: same shapes needed.
    check_agreement("number of local devices (use --local_device_ids to even them out)",
                    str(devices))
  for round_ in deal(todo, processes, devices):
    mine = round_[me]
    work = [chunks[i] for i in mine] or [chunks[todo[0]]]  # idle: repeat a chunk, drop it
    arrays = run_slots(engine, work, chunk_size, seed, mesh)
    arrays["ids"] = np.array(mine + [-1] * (devices - len(mine)), np.int32)
    if processes > 1:
      gathered = _gather(arrays)
      arrays = {k: np.asarray(a).reshape(-1, *a.shape[2:]) for k, a in gathered.items()}
    if not is_leader():
      continue
    for slot, index in enumerate(arrays["ids"].tolist()):
      if index >= 0:
        n = len(chunks[index])
        yield index, FilterResult(np.asarray(chunks[index]),
                                  *(arrays[k][slot, :n] for k in RESULT_ARRAYS))
