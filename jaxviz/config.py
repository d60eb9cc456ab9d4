"""Config files (Python files with `get_config()` returning an `ml_collections.ConfigDict`)
and `--config.KEY=VALUE` overrides, with clear errors."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import ml_collections

from jaxviz.errors import JaxvizError, unknown


def load_config(name_or_path: str) -> ml_collections.ConfigDict:
  """Loads `configs/NAME.py` shipped with jaxviz, or any `.py` file by path.

  The config comes back locked: overriding a key that does not exist is an error.
  """
  if name_or_path.endswith(".py") or "/" in name_or_path:
    path = Path(name_or_path)
    if not path.is_file():
      raise JaxvizError(f"config file {name_or_path!r} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"_jaxviz_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
  else:
    try:
      module = importlib.import_module(f"jaxviz.configs.{name_or_path}")
    except ModuleNotFoundError:
      raise unknown("config", name_or_path, shipped_configs()) from None
  if not hasattr(module, "get_config"):
    raise JaxvizError(f"config {name_or_path!r} has no get_config() function")
  config = module.get_config()
  config.lock()
  return config


def shipped_configs() -> list[str]:
  """Names of the configs that ship with jaxviz."""
  import jaxviz.configs
  folder = Path(jaxviz.configs.__file__).parent
  return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


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
  return config
