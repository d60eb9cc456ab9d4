"""The atlas's static site: pages rendered from jinja2 templates, pictures as small PNGs.

    site.build(folder, SiteInput(...))   # folder/index.html, folder/<layer>/index.html, …

Layout of `folder` (every link relative, nothing fetched from the network, works from file://):

    index.html                         the model's layers, live counts, best tiles; the classes
    style.css
    classes/class_<k>.png              class images (models with a classifier top)
    <layer>/index.html                 every tile of a conv layer, best first; filter and sort
    <layer>/filter-<f>.html            one filter: image, curve, numbers, weights, examples
    <layer>/tiles/<f>.png              the optimized image (shrunk above 96 px: see full/)
    <layer>/full/<f>.png               the full-size image, only when the tile was shrunk
    <layer>/curves/<f>.png             activation over the steps
    <layer>/weights/<f>.png            the filter's weights (first conv layer only)
    <layer>/examples/<f>-<j>.png       dataset example j with filter f's map over it
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import jinja2
import numpy as np

from jaxviz import gallery, render
from jaxviz.atlas import pictures
from jaxviz.models.spec import ModelSpec
from jaxviz.views import examples as examples_lib

FORMAT = 1          # bump when pages change, so reruns rebuild sites of older formats
STRIP = 8           # best tiles per layer on the index page
EXAMPLE_SIDE = 84


@dataclasses.dataclass
class LayerInput:
  """One layer as the gallery wrote it, plus what the site adds.

  records: filters.json, in request order.
  images: `[N, H, W, C]` float32, the optimized images in the model's input space.
  activations: `[N, steps + 1]` float32.
  shape: the layer's output shape for one image, e.g. `(14, 14, 50)`.
  weights: `[N, kh, kw, C]` uint8 weight tiles (first conv layer), or None.
  examples: the layer's `TopExamples` for all its filters, or None.
  """
  name: str
  records: list[dict]
  images: np.ndarray
  activations: np.ndarray
  shape: tuple[int, ...]
  weights: np.ndarray | None = None
  examples: examples_lib.TopExamples | None = None


@dataclasses.dataclass
class DatasetInput:
  """The examples' dataset: `pixels` `[M, H, W, C]` in [0, 255], `labels` `[M]`."""
  name: str
  split: str
  pixels: np.ndarray
  labels: np.ndarray
  rank_by: str


@dataclasses.dataclass
class SiteInput:
  """Everything a site shows. `summary`: rows of `models.spec.summarize`; `classes`: the
  classes view's classes.json records and their picture files, or None; `no_examples`: why
  a model has no dataset examples."""
  title: str
  spec: ModelSpec
  info: list[tuple[str, str]]
  summary: list
  layers: list[LayerInput]
  bounded: bool
  dataset: DatasetInput | None = None
  no_examples: str = ""
  classes: list[dict] | None = None
  class_pictures: dict[int, Path] | None = None


def environment() -> jinja2.Environment:
  """The templates of `jaxviz/atlas/templates/`, HTML-escaped, with the `number` filter."""
  env = jinja2.Environment(loader=jinja2.PackageLoader("jaxviz.atlas", "templates"),
                           autoescape=jinja2.select_autoescape(["html"]),
                           trim_blocks=True, lstrip_blocks=True,
                           undefined=jinja2.StrictUndefined)
  env.filters["number"] = number
  return env


def best_first(records: list[dict]) -> list[int]:
  """Positions of `records`: live filters by rank, then dead ones by activation (highest first,
  missing last)."""
  live = sorted((r["rank"], i) for i, r in enumerate(records) if not r["dead"])
  dead = sorted((-(r["activation"] if r["activation"] is not None else -np.inf), i)
                for i, r in enumerate(records) if r["dead"])
  return [i for _, i in live] + [i for _, i in dead]


def number(value, digits: int = 3) -> str:
  """`0.12345` → "0.123"; None (dead or not measured) → "–"."""
  return "–" if value is None else f"{value:.{digits}g}"


def build(folder: Path, site: SiteInput) -> int:
  """Writes the whole site into `folder` (existing, empty); returns the number of pages."""
  env = environment()
  shutil.copyfile(Path(__file__).parent / "templates" / "style.css", folder / "style.css")
  pages = 0
  layers = []
  for layer in site.layers:
    layers.append(_write_layer(env, folder, layer, site))
    pages += 1 + len(layer.records)
  classes = _write_classes(folder, site)
  rows = []
  for row in site.summary:
    entry = next((l for l in layers if l["name"] == row.name), None)
    rows.append({"name": row.name, "kind": row.kind, "params": f"{row.params:,}",
                 "shape": "(" + ", ".join("None" if d is None else str(d)
                                          for d in row.output_shape) + ")", "layer": entry})
  (folder / "index.html").write_text(env.get_template("index.html").render(
      title=site.title, info=site.info, rows=rows, classes=classes, root=".",
      examples_note=_examples_note(site)))
  return pages + 1


def _examples_note(site: SiteInput) -> str:
  if site.dataset is None:
    return site.no_examples
  d = site.dataset
  return (f"Dataset examples: the {len(d.labels)} images of the {d.name} {d.split} split, ranked "
          f"per filter by the {d.rank_by} of its map (the layer's output), in one forward pass.")


def _write_layer(env: jinja2.Environment, folder: Path, layer: LayerInput,
                 site: SiteInput) -> dict:
  """Writes one conv layer's pictures, its page and its filters' pages; returns what the
  index shows of it."""
  out = folder / layer.name
  subfolders = ["tiles", "curves"]
  if layer.weights is not None:
    subfolders.append("weights")
  if layer.examples is not None:
    subfolders.append("examples")
  tiles = render.optimized_tiles(site.spec, layer.images, site.bounded)
  if max(tiles.shape[1:3]) > pictures.THUMB_SIDE:
    subfolders.append("full")
  for sub in subfolders:
    (out / sub).mkdir(parents=True, exist_ok=True)
  plot = pictures.CurvePlotter()
  weight_tiles = (pictures.weight_tiles(layer.weights) if layer.weights is not None else None)
  order = best_first(layer.records)
  filters = []
  for position, i in enumerate(order):
    record = layer.records[i]
    f = record["filter"]
    thumb = pictures.thumbnail(tiles[i])
    (out / "tiles" / f"{f}.png").write_bytes(render.png_bytes(thumb))
    full = f"tiles/{f}.png"
    if thumb.shape != tiles[i].shape:
      full = f"full/{f}.png"
      (out / full).write_bytes(render.png_bytes(tiles[i]))
    (out / "curves" / f"{f}.png").write_bytes(plot(layer.activations[i]))
    entry = {**record, "index": i, "position": position, "tile": f"tiles/{f}.png",
             "full": full, "curve": f"curves/{f}.png", "page": f"filter-{f}.html",
             "thumb_side": max(thumb.shape[:2]), "weights": None, "examples": []}
    if weight_tiles is not None:
      entry["weights"] = f"weights/{f}.png"
      (out / entry["weights"]).write_bytes(render.png_bytes(weight_tiles[i]))
    if layer.examples is not None:
      entry["examples"] = _write_examples(out, f, layer.examples, site.dataset)
    filters.append(entry)
  numbers = gallery.stats(layer.records)
  summary = {"name": layer.name, "page": f"{layer.name}/index.html", "live": numbers["live"],
             "total": numbers["count"], "shape": layer.shape,
             "median_robustness": numbers["median_robustness"],
             "strip": [e for e in filters if not e["dead"]][:STRIP]}
  common = {"title": site.title, "layer": summary, "root": "..",
            "examples_note": _examples_note(site), "first_layer_weights": weight_tiles is not None}
  (out / "index.html").write_text(env.get_template("layer.html").render(filters=filters,
                                                                        **common))
  template = env.get_template("filter.html")
  for position, entry in enumerate(filters):
    previous = filters[position - 1] if position > 0 else None
    following = filters[position + 1] if position + 1 < len(filters) else None
    (out / entry["page"]).write_text(template.render(f=entry, previous=previous,
                                                     following=following, **common))
  return summary


def _write_examples(out: Path, f: int, top: examples_lib.TopExamples,
                    dataset: DatasetInput) -> list[dict]:
  """Filter `f`'s dataset examples as overlay PNGs, with what the page says of each."""
  indices = top.indices[f]
  shown = examples_lib.overlays(dataset.pixels[indices], top.maps[f], EXAMPLE_SIDE)
  entries = []
  for j, (index, score, picture) in enumerate(zip(indices, top.scores[f], shown)):
    name = f"examples/{f}-{j}.png"
    (out / name).write_bytes(render.png_bytes(picture))
    entries.append({"picture": name, "index": int(index), "label": int(dataset.labels[index]),
                    "score": float(score)})
  return entries


def _write_classes(folder: Path, site: SiteInput) -> list[dict] | None:
  if site.classes is None:
    return None
  (folder / "classes").mkdir()
  out = []
  for record in site.classes:
    c = record["class"]
    name = f"classes/class_{c}.png"
    shutil.copyfile(site.class_pictures[c], folder / name)
    out.append({**record, "picture": name})
  return out
