"""Keep Python's full garbage collections short while the gateway serves.

TensorFlow leaves a great many long-lived objects on the heap, and a full
(oldest-generation) collection walks all of them with the event loop stopped, which
showed up as the gateway's p99 under load (figures in docs/benchmarks.md). What is alive
once start-up or a model load is over stays alive, so it is moved to the permanent
generation, which collections skip (`gc.freeze`, made for this). The price: cyclic
garbage frozen with it is never freed, and a model version unloaded later is freed only
as far as reference counting reaches (the model itself is; a few objects of its load
are not).
"""

import gc


def freeze_long_lived_objects() -> None:
    """Exempt every object alive now from later collections (cheap: no collection)."""
    gc.freeze()
