"""Random affine augmentation (rotation, zoom, shift) as one dense, backend-neutral layer.

Keras' RandomRotation/RandomZoom/RandomTranslation sample with gathers whose JAX and
PyTorch implementations crawl on a GPU (PyTorch loops over the batch); on a 28x28 image
bilinear resampling is cheaper as two small matrix products. Each output pixel o reads
the input at (x_o, y_o); the bilinear weight of input column j is max(0, 1 - |x_o - j|)
(a "tent"), likewise for rows, and pixels mapped outside the image get zero weight,
which is the black MNIST background.
"""

import math

import keras
from keras import ops


class RandomAffine(keras.layers.Layer):
    """Per image: rotate by up to ±`degrees`, zoom by up to ±`zoom`, shift up to ±`shift` px.

    Identity outside training. Input and output: float [batch, height, width, 1].
    """

    def __init__(self, degrees: float, zoom: float, shift: float, seed: int | None = None, **kw):
        super().__init__(**kw)
        self.degrees, self.zoom, self.shift, self.seed = degrees, zoom, shift, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _uniform(self, batch, bound: float, centre: float = 0.0):
        return keras.random.uniform(
            (batch,), centre - bound, centre + bound, seed=self.seed_generator
        )

    def call(self, images, training=False):
        if not training:
            return images
        batch = ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]
        angle = self._uniform(batch, math.radians(self.degrees))
        scale = self._uniform(batch, self.zoom, centre=1.0)
        shift_x, shift_y = self._uniform(batch, self.shift), self._uniform(batch, self.shift)

        # Output pixel grid, centred, flattened: [1, height * width].
        rows, cols = ops.meshgrid(
            ops.arange(height, dtype="float32"), ops.arange(width, dtype="float32"), indexing="ij"
        )
        cy, cx = (height - 1) / 2, (width - 1) / 2
        dy = ops.reshape(rows, (1, -1)) - cy
        dx = ops.reshape(cols, (1, -1)) - cx
        # Inverse map (output -> input): rotate back, unzoom, unshift. [batch, pixels]
        cos = ops.expand_dims(ops.cos(angle) / scale, 1)
        sin = ops.expand_dims(ops.sin(angle) / scale, 1)
        x_in = cos * dx + sin * dy + cx - ops.expand_dims(shift_x, 1)
        y_in = -sin * dx + cos * dy + cy - ops.expand_dims(shift_y, 1)

        def tent(coordinate, size):  # [batch, pixels, size] bilinear weights
            grid = ops.arange(size, dtype="float32")
            return ops.relu(1.0 - ops.abs(ops.expand_dims(coordinate, -1) - grid))

        pixels = ops.cast(images[..., 0], "float32")
        picked_rows = ops.einsum("bph,bhw->bpw", tent(y_in, height), pixels)
        out = ops.sum(picked_rows * tent(x_in, width), axis=-1)
        return ops.cast(ops.reshape(out, (batch, height, width, 1)), images.dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "degrees": self.degrees,
            "zoom": self.zoom,
            "shift": self.shift,
            "seed": self.seed,
        }


class RandomStrokeWidth(keras.layers.Layer):
    """Per image: thicken or thin the strokes by up to `amount` of a one-pixel dilation
    or erosion (a 3x3 max or min filter), as pens, scanners and the gateway's own
    thickening of hairlines vary them. Identity outside training."""

    def __init__(self, amount: float, seed: int | None = None, **kw):
        super().__init__(**kw)
        self.amount, self.seed = amount, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training:
            return images
        batch = ops.shape(images)[0]
        weight = keras.random.uniform(
            (batch, 1, 1, 1), -self.amount, self.amount, seed=self.seed_generator
        )
        dilated = ops.max_pool(images, 3, strides=1, padding="same")
        eroded = -ops.max_pool(-images, 3, strides=1, padding="same")
        thicker = ops.relu(weight) * (dilated - images)
        thinner = ops.relu(-weight) * (eroded - images)
        return images + thicker + thinner

    def get_config(self):
        return {**super().get_config(), "amount": self.amount, "seed": self.seed}
