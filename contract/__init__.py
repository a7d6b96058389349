"""The model contract shared by training and serving.

Every backend relies on these names and shapes; a mismatch between the trainer and
the gateway here is the classic silent bug of a train/serve split, so both import
them from this one module.
"""

MODEL_NAME = "mnist"
SIGNATURE_NAME = "serving_default"
INPUT_KEY = "image"
OUTPUT_KEY = "probabilities"
# The probability that the image holds a digit at all. Optional: a version exported before
# it existed has only OUTPUT_KEY, and every image counts as a digit.
DIGIT_SCORE_KEY = "digit_score"
# The exporter calibrates digit_score so that this one threshold decides for every model
# (docs/DESIGN.md): the decision travels with the model, and every backend decides alike.
DIGIT_THRESHOLD = 0.5

IMAGE_SIZE = 28
CHANNELS = 1
INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, CHANNELS)
NUM_CLASSES = 10
LABELS = tuple(str(digit) for digit in range(NUM_CLASSES))

# MNIST digits are size-normalised into a 20x20 box and centred by centre of mass
# in the 28x28 frame; uploads must be placed the same way to look like MNIST.
DIGIT_BOX = 20

# uint8 pixel -> float32 in [0, 1], bright ink on a dark background.
PIXEL_MAX = 255.0

METADATA_FILENAME = "metadata.json"
WARMUP_RELATIVE_PATH = "assets.extra/tf_serving_warmup_requests"
