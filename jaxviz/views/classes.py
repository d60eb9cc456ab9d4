"""Class outputs: images that maximize class logits, with the softmax replaced by the identity.

The engine of the filter galleries does the work: the logits layer's units are its "filters",
and `before_relu=True` makes it maximize the layer's input to the softmax, as the seeds do by
swapping the softmax for a linear activation. All requested classes run in one compiled
program, with the same regularizers as filters. A second pass starts from the first pass's
images, as the seed's `seed_input` does.

    result = maximize_classes(model, "all", AscentSettings(steps=100, step_size=0.1), passes=2)
    result.predicted   # [K] the model's class for each image
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxviz.engine import AscentSettings, FilterEngine
from jaxviz.ranges import parse_indices
from jaxviz.errors import JaxvizError
from jaxviz.models.spec import Model, ModelSpec
from jaxviz.progress import SILENT, Progress


class ClassResult(NamedTuple):
  """Per requested class, in request order.

  classes: `[K]` class indices.
  images: `[K, H, W, C]` float32 final images in the model's input space.
  first_pass: `[K, H, W, C]` float32 images after the first pass.
  activations: `[K, passes · (steps + 1)]` float32 the target logit before each step and after
    each pass.
  logits: `[K, num_classes]` float32 the logits of the final images.
  """
  classes: np.ndarray
  images: np.ndarray
  first_pass: np.ndarray
  activations: np.ndarray
  logits: np.ndarray

  @property
  def predicted(self) -> np.ndarray:
    """`[K]` the class the model gives each final image."""
    return np.argmax(self.logits, axis=-1)

  @property
  def probabilities(self) -> np.ndarray:
    """`[K]` the softmax probability of each image's target class."""
    z = self.logits - self.logits.max(axis=-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    return p[np.arange(len(self.classes)), self.classes]


def require_top(spec: ModelSpec) -> str:
  """The logits layer; a clear error for a model without a classifier top."""
  if spec.num_classes <= 0 or not spec.logits_layer:
    raise JaxvizError(f"model {spec.name!r} as loaded has no classifier top, so it has no "
                      "classes to show. Load weights that include the top (for VGG16: "
                      "`jaxviz fetch-weights vgg16 --top`, then --config.weights=PATH).")
  return spec.logits_layer


def parse_classes(spec: ModelSpec, classes: str | Sequence[int]) -> list[int]:
  """`"all"`, `"0,3,7-9"` or a list → class indices, checked against the model's classes."""
  require_top(spec)
  return parse_indices(classes, spec.num_classes, name="classes", unit="class",
                       owner="the model", example="0,3,7-9")


def class_targets(spec: ModelSpec, classes: str | Sequence[int] | None,
                  top_k: int) -> tuple[np.ndarray, bool]:
  """Which classes a view shows per image: `(classes [K] int32, False)` for given classes, or
  `(zeros [top_k], True)` when `classes` is None or "" (each image's `top_k` predictions)."""
  require_top(spec)
  if classes is None or (isinstance(classes, str) and not classes.strip()):
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= spec.num_classes:
      raise JaxvizError(f"top_k must be a whole number in 1..{spec.num_classes}, got {top_k!r}")
    return np.zeros(top_k, np.int32), True
  return np.asarray(parse_classes(spec, classes), np.int32), False


def maximize_classes(model: Model, classes: str | Sequence[int] = "all",
                     settings: AscentSettings = AscentSettings(), *, passes: int = 2,
                     seed: int = 0, size: int | None = None, chunk_size: int = 0,
                     progress: Progress = SILENT) -> ClassResult:
  """Optimizes one image per class so that its logit grows; `passes` runs, each after the
  first starting from the previous images (pass p uses seed `seed + p`)."""
  layer = require_top(model.spec)
  indices = parse_classes(model.spec, classes)
  if passes < 1:
    raise JaxvizError(f"passes must be ≥ 1, got {passes}")
  engine = FilterEngine(model, layer, dataclasses.replace(settings, before_relu=True), size)
  images, first, history = None, None, []
  for p in range(passes):
    result = engine.run(indices, seed=seed + p, chunk_size=chunk_size, start_images=images)
    images = result.images
    first = images if first is None else first
    history.append(result.activations)
    progress(f"pass {p + 1}/{passes}: mean target logit {result.final_activations.mean():.2f}")
  logits = np.asarray(model.features(jnp.asarray(images), layer, output="pre_activation"))
  return ClassResult(np.asarray(indices), images, first, np.concatenate(history, axis=1),
                     logits.astype(np.float32))
