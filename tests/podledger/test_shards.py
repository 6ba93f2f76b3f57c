"""Series shards: every split is a partition, so the parts' rows add up to the parent's exactly."""

from __future__ import annotations

import re

from podledger.shards import Shard, shard_label

NAMES = ["web-7d4b9c6f5d-x2kqz", "postgres-0", "ip-10-0-1-17.ec2.internal", "a", "", "UPPER", "x_y", "node.Z",
         "coredns-5d78c9869d-4kz8j", "job-28391-9", "9", "-", "ends-with-dash-"]


def _pattern(shard: Shard) -> re.Pattern[str]:
    matcher = shard.matcher()
    assert matcher is not None
    return re.compile(matcher.split('=~"', 1)[1][:-1].replace("\\\\", "\\"))


def _leaves(shard: Shard) -> list[Shard]:
    parts = shard.split()
    return [shard] if parts is None else [leaf for part in parts for leaf in _leaves(part)]


def test_every_level_of_splits_partitions_the_names():
    frontier = Shard("pod").split()
    assert frontier is not None
    while True:
        for name in NAMES:
            owners = [s for s in frontier if _pattern(s).fullmatch(name)]
            assert len(owners) == 1, (name, [s.matcher() for s in owners])
        if all(s.split() is None for s in frontier):
            break
        frontier = [p for s in frontier for p in (s.split() or [s])]


def test_splitting_ends_after_two_characters_and_spreads_random_suffixes():
    leaves = _leaves(Shard("pod"))
    assert 37 < len(leaves) < 37 * 37 + 40
    assert all(len(leaf.classes or ()) <= 2 for leaf in leaves)
    assert shard_label(("namespace", "pod", "uid")) == "pod" and shard_label(("node", "resource")) == "node"
