"""Pictures for the README from finished gallery folders: every requested filter (dead ones
included, which a gallery leaves out), in filter order, enlarged.

    python scripts/docs_pictures.py runs/mnist_seed/conv2d_2 docs/images/gallery_mnist_seed.png
    python scripts/docs_pictures.py runs/vgg_default/block5_conv1 docs/images/x.png --scale 1

Tiles are drawn as the gallery draws them: the seeds' normalized display for unbounded pixel
images, true pixels for bounded parameterizations (read from the folder's config.json).
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from jaxviz import render
from jaxviz.ascent import AscentSettings
from jaxviz.models import get_spec


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("folder", type=Path)
  parser.add_argument("out", type=Path)
  parser.add_argument("--scale", type=int, default=3, help="enlargement (nearest neighbour)")
  args = parser.parse_args()
  config = json.loads((args.folder / "config.json").read_text())
  images = np.load(args.folder / "images.npy")
  display = get_spec(config["model"]).to_display(images)
  in_range = AscentSettings.from_config(config).pixels_in_range
  show = render.pixels_uint8 if in_range else render.deprocess
  grid = render.stitch(np.stack([show(x) for x in display]), margin=2)
  picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  picture = picture.resize((picture.width * args.scale, picture.height * args.scale),
                           Image.NEAREST)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  picture.save(args.out)


if __name__ == "__main__":
  main()
