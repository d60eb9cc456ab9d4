"""The `jaxviz` command. Thin: each subcommand parses its arguments and calls one library function.

    jaxviz layers [--config.model=vgg16]
    jaxviz train [--config NAME|PATH] [--config.KEY=VALUE ...]
    jaxviz gallery --workdir DIR [--config NAME|PATH] [--config.KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import sys
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
  from jaxviz.models import Model, format_summary, get_spec
  spec = get_spec(config.model)
  size = config.get("size") or None
  spec.input_shape_for(size)
  import jax
  print(format_summary(Model(spec, spec.init_params(jax.random.key(0), size)), size))


@command("train", "train LeNet with Optax and write a checkpoint", "train_lenet")
def _train(args, config):
  from jaxviz import train
  path = train.train(config)
  print(path)


@command("gallery", "optimize every filter of a layer and write its gallery", "lenet_conv2d_2")
def _gallery(args, config):
  from jaxviz import job
  out = job.run_gallery(config, require_workdir(args))
  print(out)


def require_workdir(args) -> str:
  if not args.workdir:
    raise JaxvizError("this command writes files: give --workdir DIR")
  return args.workdir


def split_overrides(extra: Sequence[str]) -> dict[str, str]:
  """`["--config.steps=5", "--config.layer", "conv2d_1"]` → `{"steps": "5", "layer": "conv2d_1"}`."""
  overrides, i = {}, 0
  extra = list(extra)
  while i < len(extra):
    arg = extra[i]
    if not arg.startswith("--config."):
      raise JaxvizError(f"unrecognized argument {arg!r}. Override config fields as "
                        "--config.KEY=VALUE (see the config file for the keys)")
    key, eq, value = arg[len("--config."):].partition("=")
    if not eq:
      if i + 1 >= len(extra):
        raise JaxvizError(f"{arg} needs a value: {arg}=VALUE")
      value, i = extra[i + 1], i + 1
    overrides[key] = value
    i += 1
  return overrides


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


def main(argv: Sequence[str] | None = None) -> int:
  parser = build_parser()
  args, extra = parser.parse_known_args(argv)
  _, default_config, handler = COMMANDS[args.command]
  try:
    config = None
    if default_config:
      from jaxviz.config import apply_overrides, load_config
      config = apply_overrides(load_config(args.config), split_overrides(extra))
    elif extra:
      parser.error(f"unrecognized arguments: {' '.join(extra)}")
    handler(args, config)
  except JaxvizError as e:
    print(f"jaxviz {args.command}: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f"jaxviz {args.command}: interrupted", file=sys.stderr)
    return 130
  return 0


if __name__ == "__main__":
  sys.exit(main())
