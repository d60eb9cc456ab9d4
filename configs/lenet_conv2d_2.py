"""The main job: a gallery of all 50 filters of LeNet's `conv2d_2` with the default preset.

    jaxviz gallery --workdir runs/lenet                       # this config is the default
    jaxviz gallery --workdir runs/lenet --config.steps=256    # any field can be overridden
    jaxviz gallery --workdir runs/seed --config seed          # the seeds' method instead

With no weights given, LeNet is trained once on the offline digits set and cached (about 15 s
on 2 CPU cores); `--config.dataset=mnist` uses (and trains) the MNIST one.
"""

from jaxviz.configs.default import get_config  # noqa: F401
