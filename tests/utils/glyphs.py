"""Glyphs a reader could take for a digit (Latin, Greek and Cyrillic look-alikes, and the
tall single strokes of a 1): never to be drawn as "not a digit", neither by the training
negatives nor by the benchmark's evaluation set."""

DIGIT_LIKE = set(
    "0123456789OoQDIlijJ|/\\!()[]{}Zz2Ss$5bG6B8gq9dΘΦΩοσθφεξζ∞∂§ЗЭэзЧчБбЪъЬьВвβδЮюФфОо↑↓↕♡♢☯☻☼"  # noqa: RUF001
)
