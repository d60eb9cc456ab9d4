"""The `jaxviz` command. Thin: each subcommand parses its arguments and calls one library function.

    jaxviz layers [--config.model=vgg16]
    jaxviz train [--config NAME|PATH] [--config.KEY=VALUE ...]
    jaxviz gallery --workdir DIR [--wait] [--config NAME|PATH] [--config.KEY=VALUE ...]
        [--coordinator_address HOST:PORT --num_processes N --process_id I | --distributed on]
        [--init_timeout SECONDS] [--heartbeat_timeout SECONDS]
    jaxviz sweep --workdir DIR --sweep.KEY=V1,V2,… [--config NAME|PATH] [--config.KEY=VALUE ...]
    jaxviz score IMAGES [--json] [--config NAME|PATH] [--config.KEY=VALUE ...]
    jaxviz convert IN OUT [--model vgg16]
    jaxviz fetch-weights vgg16 [--top]
    jaxviz bench [--config NAME|PATH] [--json] [--config.KEY=VALUE ...]
    jaxviz weights | feature-maps | classes | gradcam --workdir DIR [--config.KEY=VALUE ...]
    jaxviz attribution --workdir DIR [--method saliency|guided|deconvnet] [--config.KEY=VALUE ...]
    jaxviz atlas --workdir DIR [--wait] [--config.KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from jaxviz.errors import JaxvizError

# Each command: (help, default config name or None, handler(args, config)).
COMMANDS: dict[str, tuple[str, str | None, Callable]] = {}


def command(name: str, help: str, default_config: str | None = None):
  def register(fn):
    COMMANDS[name] = (help, default_config, fn)
    return fn
  return register


@command("layers", "print a model's layers, like Keras' model.summary()", "lenet_conv2d_2")
def _layers(args, config):
  from jaxviz.models import format_summary, get_spec
  print(format_summary(get_spec(config.model), config.get("size") or None))


@command("train", "train LeNet with Optax and write a checkpoint", "train_lenet")
def _train(args, config):
  from jaxviz import train
  path = train.train(config)
  print(path)


@command("gallery", "optimize every filter of a layer and write its gallery", "lenet_conv2d_2")
def _gallery(args, config):
  from jaxviz import distributed, host_devices
  from jaxviz.jobs import gallery
  from jaxviz.progress import Progress
  workdir = require_workdir(args)
  if not distributed.initialize(args.distributed, args.coordinator_address,
                                args.num_processes, args.process_id, args.local_device_ids,
                                timeout=args.init_timeout, progress=Progress("gallery"),
                                heartbeat_timeout=args.heartbeat_timeout):  # before any JAX work
    host_devices.split_cpu()  # one process: one device per CPU core
  _keep_compiled_programs(Progress("gallery"), announce=distributed.is_leader())
  out = gallery.run_gallery(config, workdir, wait=args.wait)
  if distributed.is_leader():
    print(out)
    print(f"{out.name}: {gallery.layer_summary(out)}")


def _keep_compiled_programs(progress, announce: bool = True) -> None:
  """`cache.keep_compiled_programs`, saying where (on accelerators only) when `announce`."""
  from jaxviz import cache
  kept = cache.keep_compiled_programs()
  if kept and announce:
    progress(f"compiled programs are kept in {kept} for the next run")


def _gallery_arguments(parser):
  parser.add_argument("--wait", action="store_true",
                      help="when another run is using the workdir, wait for it to end instead "
                      "of stopping with an error")
  group = parser.add_argument_group(
      "many hosts (jax.distributed)", "Start the same command on every process; process 0 "
      "writes the workdir. A rerun of the same command resumes an interrupted run.")
  group.add_argument("--distributed", choices=("auto", "on", "off"), default="auto",
                     help="auto (default): start JAX's multi-host runtime when the flags below "
                     "are given or srun/mpirun launched several processes; on: always, JAX "
                     "detecting the cluster (Cloud TPU pod, SLURM, Open MPI); off: one process")
  group.add_argument("--coordinator_address", default=None, metavar="HOST:PORT",
                     help="address of process 0's coordinator, the same on every process")
  group.add_argument("--num_processes", type=int, default=None, metavar="N",
                     help="number of processes")
  group.add_argument("--process_id", type=int, default=None, metavar="I",
                     help="this process, 0 … N-1")
  group.add_argument("--local_device_ids", type=_int_list, default=None, metavar="0,1,…",
                     help="the local devices this process uses (default: all)")
  group.add_argument("--init_timeout", type=float, default=60.0, metavar="SECONDS",
                     help="how long a process waits for the coordinator and the other "
                     "processes at start-up before it stops with an error (default: 60)")
  group.add_argument("--heartbeat_timeout", type=float, default=20.0, metavar="SECONDS",
                     help="when a process stops answering for this long, the others stop "
                     "too instead of waiting for it (default: 20)")


def _int_list(text: str) -> list[int]:
  try:
    return [int(part) for part in text.split(",") if part.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected device ids like 0,1; got {text!r}") from None


_gallery.add_arguments = _gallery_arguments


@command("sweep", "optimize a layer's filters under a grid of ascent hyperparameters, in one "
         "compiled program", "lenet_conv2d_2")
def _sweep(args, config):
  from jaxviz import host_devices
  from jaxviz.jobs import sweep
  from jaxviz.progress import Progress
  host_devices.split_cpu()  # one device per CPU core, before JAX starts
  _keep_compiled_programs(Progress("sweep"))
  out, best = sweep.run_sweep(config, args.grid, require_workdir(args), args.config,
                              args.overrides, Progress("sweep"))
  print(out)
  print(f"best: {sweep.summary_text(best)} → {out / 'best.py'}")


def _sweep_take(args, extra):
  from jaxviz.jobs import sweep
  args.grid, rest = sweep.split_sweep_arguments(extra)
  args.overrides = split_overrides(rest)
  return rest


def _sweep_arguments(parser):
  from jaxviz import ascent
  from jaxviz.jobs import sweep
  parser.add_argument_group(
      "the grid", f"--sweep.KEY=V1,V2,… (one or more keys): every combination of the values is "
      f"a setting, at most {sweep.MAX_SETTINGS}. Keys: {', '.join(ascent.HYPERPARAMETERS)}.")


_sweep.take_arguments = _sweep_take
_sweep.add_arguments = _sweep_arguments


@command("score", "score images made elsewhere as a gallery scores its own (activation, "
         "robustness)", "lenet_conv2d_2")
def _score(args, config):
  import json
  from jaxviz import gallery
  from jaxviz.jobs import score
  records = score.run_score(config, args.images)
  if args.json:
    print(json.dumps(records, indent=1))
    return
  for r in records:
    robustness = "–" if r["robustness"] is None else f"{r['robustness']:.2f}"
    print(f"filter {r['filter']}: activation {r['activation']:.4g}, robustness {robustness}"
          + (", dead" if r["dead"] else ""))
  print(gallery.summary_line(records))


def _score_arguments(parser):
  parser.add_argument("images", help="a .npy of pixels [N, H, W, C] on the 0–255 scale (RGB or "
                      "grey, at the model's input size), or image files a.png,b.png; image i is "
                      "scored for the i-th of --config.filters")
  parser.add_argument("--json", action="store_true",
                      help="print the filters.json records instead of one line per filter")


_score.add_arguments = _score_arguments


@command("convert", "convert a Keras weights file (any layout) to a jaxviz checkpoint")
def _convert(args, config):
  from jaxviz.convert import keras
  print(keras.convert(args.input, args.output, args.model))


def _convert_arguments(parser):
  parser.add_argument("input", help="Keras file: .h5 (Keras 2 or legacy), .weights.h5, .keras")
  parser.add_argument("output", help="checkpoint to write, ending in .msgpack")
  parser.add_argument("--model", default="vgg16", help="model the weights are for (default: "
                      "vgg16; with or without its top, as the file holds)")


_convert.add_arguments = _convert_arguments


@command("fetch-weights", "download, verify and convert a model's Keras ImageNet weights")
def _fetch_weights(args, config):
  from jaxviz import weights
  print(weights.fetch(args.model, top=args.top))


def _fetch_weights_arguments(parser):
  parser.add_argument("model", help="model whose weights to fetch: vgg16")
  parser.add_argument("--top", action="store_true",
                      help="the file with the classifier top (528 MB) instead of the base (58 MB)")


_fetch_weights.add_arguments = _fetch_weights_arguments


@command("bench", "time a visualization job cold and warm against the machine's peak and the "
         "seed method", "bench_lenet")
def _bench(args, config):
  from jaxviz import bench
  bench.main_command(config, json_lines=args.json)


def _bench_arguments(parser):
  parser.add_argument("--json", action="store_true",
                      help="print one JSON line per job instead of the table")


_bench.add_arguments = _bench_arguments


@command("weights", "draw a conv layer's filter weights as tiles", "views_weights")
def _weights(args, config):
  from jaxviz.jobs import views as jobs
  print(jobs.run_weights(config, require_workdir(args)))


@command("feature-maps", "draw the feature maps of chosen layers for input images",
         "views_feature_maps")
def _feature_maps(args, config):
  from jaxviz.jobs import views as jobs
  print(jobs.run_feature_maps(config, require_workdir(args)))


@command("classes", "optimize one image per class logit (softmax made linear)", "views_classes")
def _classes(args, config):
  from jaxviz.jobs import views as jobs
  print(jobs.run_classes(config, require_workdir(args)))


@command("gradcam", "Grad-CAM heatmaps of predicted or given classes over input images",
         "views_gradcam")
def _gradcam(args, config):
  from jaxviz.jobs import views as jobs
  print(jobs.run_gradcam(config, require_workdir(args)))


@command("attribution", "saliency, guided backprop or deconvnet maps of input images",
         "views_attribution")
def _attribution(args, config):
  from jaxviz.jobs import views as jobs
  if args.method:
    config.method = args.method
  print(jobs.run_attribution(config, require_workdir(args)))


def _attribution_arguments(parser):
  parser.add_argument("--method", default="", help="saliency, guided or deconvnet "
                      "(default: the config's method, guided)")


_attribution.add_arguments = _attribution_arguments


@command("atlas", "every conv layer's filters, the classes and dataset examples as a static "
         "HTML site", "atlas")
def _atlas(args, config):
  from jaxviz.jobs import atlas
  print(atlas.run_atlas(config, require_workdir(args), wait=args.wait))


def _atlas_arguments(parser):
  parser.add_argument("--wait", action="store_true",
                      help="when another run is using the workdir, wait for it to end instead "
                      "of stopping with an error")


_atlas.add_arguments = _atlas_arguments


def require_workdir(args) -> str:
  if not args.workdir:
    raise JaxvizError("this command writes files: give --workdir DIR")
  return args.workdir


def split_overrides(extra: Sequence[str]) -> dict[str, str]:
  """`["--config.steps=5", "--config.layer", "conv2d_1"]` →
  `{"steps": "5", "layer": "conv2d_1"}`."""
  from jaxviz.config import take_prefixed
  pairs, rest = take_prefixed(extra, "--config.")
  if rest:
    raise JaxvizError(f"unrecognized argument {rest[0]!r}. Override config fields as "
                      "--config.KEY=VALUE (see the config file for the keys)")
  return dict(pairs)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="jaxviz", description="See what convolutional networks learn, fast.",
      epilog="Any config field can be overridden as --config.KEY=VALUE.")
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  for name, (help, default_config, _) in COMMANDS.items():
    p = sub.add_parser(name, help=help, description=help,
                       epilog="Any config field can be overridden as --config.KEY=VALUE.")
    if default_config:
      p.add_argument("--config", default=default_config,
                     help=f"shipped config name or path to a .py file (default: {default_config})")
    p.add_argument("--workdir", default="", help="output directory")
    add_arguments = getattr(COMMANDS[name][2], "add_arguments", None)
    if add_arguments:
      add_arguments(p)
  return parser


class Terminated(BaseException):
  """SIGTERM (a scheduler's preemption, `kill`): unwinds like Ctrl-C, so jobs clean up."""


def _terminate(signum, frame):
  raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _terminate)
  parser = build_parser()
  args, extra = parser.parse_known_args(argv)
  _, default_config, handler = COMMANDS[args.command]
  try:
    config = None
    take = getattr(handler, "take_arguments", None)  # a command's own --PREFIX.KEY arguments
    extra = take(args, extra) if take else extra
    if default_config:
      from jaxviz.config import apply_overrides, load_config
      config = apply_overrides(load_config(args.config), split_overrides(extra))
    elif extra:
      parser.error(f"unrecognized arguments: {' '.join(extra)}")
    handler(args, config)
  except JaxvizError as e:
    print(f"jaxviz {args.command}: error: {e}", file=sys.stderr)
    return 2
  except (KeyboardInterrupt, Terminated) as e:
    stopped = "interrupted" if isinstance(e, KeyboardInterrupt) else "stopped by SIGTERM"
    print(f"jaxviz {args.command}: {stopped}; nothing half-written is left"
          + ("; rerun the same command to resume" if args.command == "gallery" else ""),
          file=sys.stderr)
    return 130 if isinstance(e, KeyboardInterrupt) else 143
  return 0


if __name__ == "__main__":
  sys.exit(main())
