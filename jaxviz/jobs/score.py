"""The score job: images made elsewhere scored as a gallery scores its own.

Another tool's pictures (Lucid, Lucent, a Keras script), an earlier run's or a PNG get, for the
filter each is meant for, the numbers of `filters.json`: `activation`, the true objective of the
image as it is, `robustness`, its mean activation under the held-out transforms over that, and
`dead`. Every system is then measured by one evaluator on the same weights.

    jaxviz score lucent.npy --config vgg16_block5_conv1 --config.weights=vgg16.h5 \\
        --config.filters=0-15
    jaxviz score a.png,b.png --config.filters=3,7                  # LeNet conv2d_2
"""

from __future__ import annotations

from pathlib import Path

import ml_collections
import numpy as np

from jaxviz import gallery, images as images_lib, objectives
from jaxviz.engine import AscentSettings, FilterEngine
from jaxviz.errors import JaxvizError
from jaxviz.jobs.gallery import resolve_layers
from jaxviz.models import get_spec
from jaxviz.models.spec import ModelSpec
from jaxviz.progress import Progress
from jaxviz.provision import load_or_train
from jaxviz.ranges import parse_indices


def read_pixels(source: str, spec: ModelSpec, size: int | None) -> np.ndarray:
  """`[N, H, W, C]` pixels on the 0–255 scale in the model's display order (RGB or grey).

  `source` is a `.npy` file of such pixels (`[N, H, W]` for grey models too), already at the
  model's input size, or image files and dataset entries as `jaxviz.load_images` reads them
  (`"a.png,b.png"`), resized to it.
  """
  shape = spec.input_shape_for(size)
  if not source.endswith(".npy"):
    return images_lib.load_images(source, spec, size).pixels
  if not Path(source).is_file():
    raise JaxvizError(f"no such file: {source!r}")
  try:
    pixels = np.load(source, allow_pickle=False)
  except ValueError as e:
    raise JaxvizError(f"cannot read {source!r} as a NumPy array: {e}") from None
  if pixels.ndim == 3 and shape[-1] == 1:
    pixels = pixels[..., None]
  if pixels.ndim != 4 or pixels.shape[1:] != shape or not np.issubdtype(pixels.dtype, np.number):
    raise JaxvizError(f"{source!r} holds {pixels.dtype} {list(pixels.shape)}; expected pixels "
                      f"[N, {', '.join(map(str, shape))}] for {spec.name} at this size "
                      "(set --config.size to the images' side)")
  pixels = pixels.astype(np.float32)
  if not np.all(np.isfinite(pixels)) or pixels.min() < -0.5 or pixels.max() > 255.5:
    raise JaxvizError(f"{source!r}: pixels must be finite and on the 0–255 scale, found "
                      f"{np.nanmin(pixels):.3g} … {np.nanmax(pixels):.3g} (multiply images in "
                      "[0, 1] by 255)")
  return pixels


def run_score(config: ml_collections.ConfigDict, source: str,
              progress: Progress | None = None) -> list[dict]:
  """The filters.json records (`filter`, `activation`, `robustness`, `dead`, `rank`) of the
  images in `source`, image i scored for the i-th filter of `config.filters` in `config.layer`,
  with the config's objective and held-out transforms."""
  progress = progress or Progress("score")
  spec = get_spec(config.model)
  layers = resolve_layers(spec, config.layer)
  if len(layers) != 1:
    raise JaxvizError(f"score one layer at a time; got {', '.join(layers)}")
  layer = layers[0]
  settings = AscentSettings.from_config(config)
  settings.validate()
  filters = parse_indices(config.filters, objectives.num_filters(spec, layer))
  pixels = read_pixels(source, spec, config.size or None)
  if len(pixels) != len(filters):
    raise JaxvizError(f"{len(pixels)} images for {len(filters)} filters ({config.filters!r}): "
                      "give --config.filters one filter per image, in the images' order")
  progress(f"loading {spec.name} weights")
  model = load_or_train(config.model, config.weights or None, dataset=config.dataset)
  engine = FilterEngine(model, layer, settings, config.size or None)
  progress(f"scoring {len(pixels)} images at {layer}")
  activation, robustness = engine.score(np.asarray(spec.pixels_to_input(pixels)), filters)
  records = gallery.filter_records(np.asarray(filters), activation, robustness,
                                   config.get("preset", ""))
  for record in records:
    del record["woken"], record["preset"]  # about how an image was made, not known here
  return records
