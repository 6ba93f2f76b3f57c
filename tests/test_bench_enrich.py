"""bench/enrich.py measures a fair race: its DuckDB peer and podledger give the same rows and the bill's money.

A benchmark whose peer silently computed something else (fewer rows, other owners or labels, other money) would
report a ratio that means nothing; this runs it on a tiny cluster and reads what it printed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_benchmark_peer_and_podledger_agree_row_by_row_and_with_the_bill(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "enrich.py"), "--nodes", "10", "--pods", "60", "--days", "1", "2",
         "--repeat", "1", "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    out = done.stdout
    first_day = re.search(r"first day, row by row: ([\d,]+) rows, (\d+) in one output only, largest cost difference "
                          r"(\S+), (\d+) owners and (\d+) pod label texts differ; split line items: ([\d,]+), (\d+) in "
                          r"one output only, largest difference of their (\d+) number columns (\S+), (\d+) differ in text "
                          r"columns", out)
    assert first_day, out
    rows, alone, worst, owners, labels, items, items_alone, money_columns, items_worst, texts = first_day.groups()
    assert int(rows.replace(",", "")) > 60 * 24 and (alone, owners, labels) == ("0", "0", "0")
    assert float(worst) < 1e-9
    # both write the same split line items (two per pod row): the same work, the same money
    assert int(items.replace(",", "")) > 2 * 60 * 24 and (items_alone, texts) == ("0", "0")
    assert money_columns == "10" and float(items_worst) < 1e-9
    totals = re.findall(r"allocated: podledger ([\d,.]+), peer ([\d,.]+), billed ([\d,.]+)", out)
    assert len(totals) == 2, out  # 1 and 2 days
    for ours, peer, billed in totals:
        assert abs(float(ours.replace(",", "")) - float(billed.replace(",", ""))) < 1e-6
        assert abs(float(peer.replace(",", "")) - float(billed.replace(",", ""))) < 1e-6
    # the 2-day run reports each day's own peak (Linux), against the 1-day run's
    if Path("/proc/self/clear_refs").exists():
        assert re.search(r"per-day peak: day 1 [\d,]+ MiB, days 2-2 median [\d,]+ max [\d,]+ MiB, trend [+-][\d.]+ "
                         r"MiB/day; vs the 1-day run", out), out
