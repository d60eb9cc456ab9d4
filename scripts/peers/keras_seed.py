"""The Keras/TensorFlow peer of `jaxviz bench`'s VGG16 jobs: the seeds' method, one filter at a
time, with one cached `tf.function` (the filter index is an argument, so it traces once), on the
same work (VGG16 conv stack with He-normal weights and zero biases, 16 filters, 64×64, 20 steps
of the normalized gradient on the mean of the filter's post-ReLU map, step 1.0).

Needs TensorFlow (not a jaxviz dependency): `pip install tensorflow-cpu`. Prints one JSON line
per layer with the best and median warm time of `--repeats` runs after one warm-up run.

    python scripts/peers/keras_seed.py --layers block1_conv2,block3_conv1,block5_conv1
"""

import numpy as np
import tensorflow as tf

from common import job_parser, report_warm


def stack_up_to(layer: str, size: int) -> tf.keras.Model:
  """Keras's VGG16 (no top, random He-normal kernels, zero biases) up to `layer`."""
  vgg = tf.keras.applications.VGG16(include_top=False, weights=None,
                                    input_shape=(size, size, 3))
  for l in vgg.layers:
    if isinstance(l, tf.keras.layers.Conv2D):
      fan_in = np.prod(l.kernel.shape[:3])
      l.kernel.assign(np.random.default_rng(0).normal(
          0, np.sqrt(2 / fan_in), l.kernel.shape).astype(np.float32))
      l.bias.assign(np.zeros(l.bias.shape, np.float32))
  return tf.keras.Model(vgg.input, vgg.get_layer(layer).output)


def main() -> None:
  args = job_parser(__doc__.split("\n\n")[0]).parse_args()
  for layer in args.layers.split(","):
    model = stack_up_to(layer, args.size)

    @tf.function
    def iterate(x, f):
      with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_mean(tf.gather(model(x), f, axis=-1))
      g = tape.gradient(loss, x)
      return loss, g / (tf.sqrt(tf.reduce_mean(tf.square(g))) + 1e-5)

    def run():
      for f in range(args.filters):
        x = (np.random.default_rng(f).random((1, args.size, args.size, 3)) - 0.5) * 20 + 128
        x = tf.constant(x, tf.float32)
        for _ in range(args.steps):
          _, g = iterate(x, tf.constant(f))
          x = x + g
        x.numpy()

    report_warm(run, args, layer, system=f"keras/tensorflow {tf.__version__} seed method")

if __name__ == "__main__":
  main()
