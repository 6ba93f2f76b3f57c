"""Series shards: split a query's series into disjoint sets by the last characters of one label's value.

When a backend refuses a query for its size, a time split halves the samples read but not the answer (one
value per series) nor the intermediate vectors; a series split halves all three. Kubernetes names end in
random or numeric characters (``web-7d4b9c6f5d-x2kqz``, ``ip-10-0-1-17.ec2.internal``, ``postgres-0``), so
the last characters spread series evenly. Every split is a partition of the parent (two halves of a
character class, or one more character to the left plus the values that have none there), so the parts'
rows add up to exactly the parent's rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from podledger.catalog import escape_label_value

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
MAX_LEVELS = 2  # characters from the end: up to ~37^2 shards before falling back to time splits


@dataclass(frozen=True)
class Shard:
    """The series whose ``label`` value ends with one character of each class (``classes[-1]`` is the last)."""

    label: str
    classes: tuple[str, ...] | None = None  # None: every series (the unsplit query)
    remainder: bool = False  # the values whose character left of ``classes`` is missing or not in ALPHABET

    def matcher(self) -> str | None:
        """Return the PromQL matcher selecting this shard, or None for the whole set."""
        if self.classes is None:
            return None
        suffix = "".join(f"[{chars}]" for chars in self.classes)
        pattern = f"(?:.*[^{ALPHABET}])?{suffix}" if self.remainder else f".*{suffix}"
        return f'{self.label}=~"{escape_label_value(pattern)}"'

    def split(self) -> list[Shard] | None:
        """Return a partition of this shard into smaller ones, or None when it cannot be split further."""
        if self.remainder:
            return None
        classes = self.classes or ()
        if classes and len(classes[0]) > 1:
            half = len(classes[0]) // 2
            return [Shard(self.label, (classes[0][:half], *classes[1:])),
                    Shard(self.label, (classes[0][half:], *classes[1:]))]
        if len(classes) >= MAX_LEVELS:
            return None
        half = len(ALPHABET) // 2
        return [Shard(self.label, (ALPHABET[:half], *classes)), Shard(self.label, (ALPHABET[half:], *classes)),
                Shard(self.label, classes, remainder=True)]


def shard_label(keys: tuple[str, ...]) -> str:
    """Return the key label to shard a metric's series on: the pod when there is one, else the first key."""
    return "pod" if "pod" in keys else keys[0]
