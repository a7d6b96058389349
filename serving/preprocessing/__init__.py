"""Turn an uploaded image into the model's input: an MNIST-like float32 [28, 28, 1] tensor.

Pure functions, no I/O beyond the bytes handed in. The pipeline mirrors how MNIST itself
was made (NIST digits size-normalised into a 20x20 box, anti-aliased, then centred by
centre of mass in a 28x28 field), after first undoing what real uploads do differently.
One module per stage, each with its compiled loops beside it:

    decode.py     open_image: header only (format whitelist, pixel limit)
                  decode: first frame -> shrink -> EXIF orientation -> alpha on white
                  -> grayscale in [0, 1]
    region.py     large images: the ink found on a coarse view, the region around the
                  digit cut out at the resolution it needs
    ink.py        polarity (background from the border), paper shading, contrast
                  stretch, noise floor -> bright ink on dark in [0, 1]
    placement.py  crop to the ink -> thicken hairlines -> fit into 20x20 -> place in
                  28x28 by centre of mass

Every failure raises a `serving.errors` exception: BadImage (400), PayloadTooLarge (413),
UnsupportedMediaType (415), NoInk (422).
"""

import io

import numpy as np
from PIL import Image

from contract import CHANNELS, IMAGE_SIZE
from serving.preprocessing.decode import SUPPORTED_FORMATS, OpenedImage, decode, open_image
from serving.preprocessing.ink import ink_map
from serving.preprocessing.placement import place
from serving.preprocessing.region import digit_region
from serving.preprocessing.segments import Segment, read_segments

__all__ = [
    "SUPPORTED_FORMATS",
    "OpenedImage",
    "Segment",
    "decode",
    "mnist_like",
    "open_image",
    "preprocess",
    "read_segments",
    "warm_up",
]


def mnist_like(gray: np.ndarray, *, lossy: bool = False) -> np.ndarray:
    """Grayscale [0, 1] array of any size -> float32 [28, 28, 1]; NoInk if uniform."""
    region = digit_region(np.asarray(gray, dtype=np.float32), lossy=lossy)
    frame = place(ink_map(region, lossy=lossy))
    return frame.reshape(IMAGE_SIZE, IMAGE_SIZE, CHANNELS)


def preprocess(data: bytes, *, max_pixels: int) -> np.ndarray:
    """Image file bytes -> the model's float32 [28, 28, 1] input in [0, 1]."""
    opened = open_image(data, max_pixels=max_pixels)
    return mnist_like(decode(opened), lossy=opened.lossy)


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel, for every array layout the
    pipeline hands them, so that no request waits for a compiler."""
    mnist = np.zeros((28, 28), np.uint8)
    mnist[4:24, 12:15] = 255  # a "1" already 20 pixels tall: views of the ink
    png = io.BytesIO()
    Image.fromarray(mnist).save(png, format="PNG")
    preprocess(png.getvalue(), max_pixels=mnist.size)
    page = np.ones((96, 96), np.float32)
    page[20:76, 46:50] = 0.0  # resized into the box
    mnist_like(page)
    mnist_like(page * np.linspace(0.7, 1.0, 96, dtype=np.float32), lossy=True)  # shaded
    hairline = np.ones((400, 300), np.float32)
    hairline[60:350, 150] = 0.0  # thickened (too faint for the coarse view)
    mnist_like(hairline)
    hairline[100:200, 20:40] = 0.0  # a large image: the region around the ink
    mnist_like(hairline)
