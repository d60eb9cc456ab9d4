"""Config files (Python files with `get_config()` returning an `ml_collections.ConfigDict`)
and `--config.KEY=VALUE` overrides, with clear errors."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import math
import os
import traceback
from collections.abc import Sequence
from pathlib import Path

import ml_collections

from jaxviz.errors import JaxvizError, unknown


def load_config(name_or_path: str) -> ml_collections.ConfigDict:
  """Loads `configs/NAME.py` shipped with jaxviz, or any `.py` file by path.

  The config comes back locked: overriding a key that does not exist is an error. Any problem
  in the file (a syntax error, an exception in `get_config()`, a value that is not a finite
  number) is a `JaxvizError` naming the file and line.
  """
  if name_or_path.endswith(".py") or "/" in name_or_path:
    path = Path(name_or_path)
    if not path.is_file():
      raise JaxvizError(f"config file {name_or_path!r} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"_jaxviz_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    with config_file_errors(path):
      module_spec.loader.exec_module(module)
  else:
    if name_or_path not in shipped_configs():
      raise unknown("config", name_or_path, shipped_configs())
    path = configs_folder() / f"{name_or_path}.py"
    with config_file_errors(path):
      module = importlib.import_module(f"jaxviz.configs.{name_or_path}")
  if not hasattr(module, "get_config"):
    raise JaxvizError(f"config {name_or_path!r} has no get_config() function")
  with config_file_errors(path):
    config = module.get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise JaxvizError(f"config file {str(path)!r}: get_config() returned a "
                      f"{type(config).__name__}, not an ml_collections.ConfigDict")
  check_finite(config, f"config file {str(path)!r}: ")
  config.lock()
  return config


class config_file_errors:
  """Turns any exception raised while running config file `path` into a `JaxvizError`
  `"config file 'PATH', line N: <problem>"`: for a syntax error its line and column, for an
  exception raised while executing it the innermost line of that file the traceback passes."""

  def __init__(self, path: Path):
    self.path = path

  def __enter__(self):
    return self

  def __exit__(self, kind, error, tb):
    if error is None or not isinstance(error, Exception) or isinstance(error, JaxvizError):
      return False
    where = f"config file {str(self.path)!r}"
    if isinstance(error, SyntaxError):
      line = f", line {error.lineno}" if error.lineno else ""
      column = f", column {error.offset}" if error.offset else ""
      text = f": {error.text.strip()!r}" if error.text and error.text.strip() else ""
      problem = f"{type(error).__name__}: {error.msg}{text}"
      if error.filename and not same_file(error.filename, self.path):
        where = f"{where} (in {error.filename}{line})"  # a module the config imports
      else:
        where += line + column
    else:
      lines = [frame.lineno for frame in traceback.extract_tb(tb)
               if same_file(frame.filename, self.path)]
      where += f", line {lines[-1]}" if lines else ""
      problem = f"{type(error).__name__}: {error}"
    raise JaxvizError(f"{where}: {problem}. Fix the config file.") from None


def same_file(name: str, path: Path) -> bool:
  try:
    return os.path.samefile(name, path)
  except OSError:
    return False


def check_finite(config: ml_collections.ConfigDict, where: str = "", prefix: str = "") -> None:
  """Raises a `JaxvizError` naming the key of any float in `config` (nested keys dotted, lists
  and tuples too) that is NaN or infinite: no config field means that, and JSON cannot hold it."""
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      check_finite(value, where, f"{name}.")
    else:
      for item in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(item, float) and not math.isfinite(item):
          raise JaxvizError(f"{where}config key {name!r} is {value!r}; it must be a finite "
                            "number.")


def configs_folder() -> Path:
  """The folder of the configs that ship with jaxviz."""
  import jaxviz.configs
  return Path(jaxviz.configs.__file__).parent


def shipped_configs() -> list[str]:
  """Names of the configs that ship with jaxviz."""
  return sorted(p.stem for p in configs_folder().glob("*.py") if not p.stem.startswith("_"))


def take_prefixed(extra: Sequence[str], prefix: str) -> tuple[list[tuple[str, str]], list[str]]:
  """Command-line arguments `--PREFIX.KEY=VALUE` or `--PREFIX.KEY VALUE` → (`[(KEY, VALUE)]` in
  order, the other arguments): `--config.` overrides, `--sweep.` value lists."""
  pairs, rest, i = [], [], 0
  extra = list(extra)
  while i < len(extra):
    arg = extra[i]
    if not arg.startswith(prefix):
      rest.append(arg)
      i += 1
      continue
    key, eq, value = arg[len(prefix):].partition("=")
    if not eq:
      if i + 1 >= len(extra) or extra[i + 1].startswith("--"):
        raise JaxvizError(f"{arg} needs a value: {arg}=VALUE")
      value, i = extra[i + 1], i + 1
    pairs.append((key, value))
    i += 1
  return pairs, rest


def parse_value(text: str):
  """`"50"` → 50, `"0.5"` → 0.5, `"True"` → True, `"None"` → None, anything else → the text."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
  """Sets `config.<key>` (dotted for nested fields) from its command-line text."""
  *parents, leaf = key.split(".")
  node = config
  for i, part in enumerate(parents + [leaf]):
    valid = list(node.keys())
    if part not in valid:
      raise unknown("config key", ".".join(parents[:i] + [part]), valid)
    if i < len(parents):
      node = node[part]
  value = parse_value(text)
  current = node[leaf]
  if isinstance(current, str) and not isinstance(value, str):
    value = text  # e.g. filters=3 or layer=1: keep the text for string fields
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  try:
    with node.unlocked():
      node[leaf] = value
  except TypeError:
    raise JaxvizError(f"config key {key!r} takes a {type(current).__name__} "
                      f"(default {current!r}); got {text!r}") from None


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: dict[str, str]) -> ml_collections.ConfigDict:
  for key, text in overrides.items():
    apply_override(config, key, text)
  check_finite(config)
  return config
