"""Words for messages and titles."""

from __future__ import annotations


def plural(n: int, noun: str, plural_noun: str | None = None) -> str:
    """A count and its noun as messages and titles print them: "1 epoch", "1,000 epochs",
    "2 classes" (``plural_noun``: the noun's plural where it is not ``noun`` + "s")."""
    if n == 1:
        return f"{n:,} {noun}"
    return f"{n:,} {plural_noun or noun + 's'}"
