"""Keep Python's full garbage collections short while the gateway serves.

TensorFlow leaves ~300,000 long-lived objects on the heap, and a full (oldest-generation)
collection walks all of them: measured ~150-175 ms with the event loop stopped, which
showed up as the gateway's p99 under load. What is alive once start-up or a model load
is over stays alive, so it is moved to the permanent generation, which collections skip
(`gc.freeze`, made for this). The price: cyclic garbage frozen with it is never freed,
and a model version unloaded later is freed only as far as reference counting reaches
(measured: a SavedModel load leaves ~3,000 such objects; the model itself is freed).
"""

import gc


def freeze_long_lived_objects() -> None:
    """Exempt every object alive now from later collections (cheap: no collection)."""
    gc.freeze()
