"""The seeds' method on LeNet `conv2d_2`: the `seed` preset under its earlier name.

    jaxviz gallery --config lenet_seed --workdir runs/lenet_seed
"""

from jaxviz.configs.seed import get_config  # noqa: F401
