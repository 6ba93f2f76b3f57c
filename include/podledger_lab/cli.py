"""The ``podledger-lab`` command: a synthetic cluster and the demo on a local stack (not part of the product)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from podledger.cli import parse_time, run


def cmd_synth(args: argparse.Namespace) -> int:
    from podledger_lab.synth import synthesize

    hours = args.days * 24 if args.days else args.hours
    out = synthesize(args.out, cluster_name=args.cluster_name, nodes=args.nodes, pods=args.pods, hours=hours,
                     start=args.start, seed=args.seed, cluster_label=args.cluster_label)
    print(f"wrote {out.openmetrics}, CUR 2.0 export under {out.cur_root}, truth {out.truth_pods} and {out.truth_instances}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from podledger_lab.demo import run_demo

    return run_demo(Path(args.workdir), use_airflow=not args.no_airflow, keep_running=args.keep_running,
                    hours=args.hours)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="podledger-lab", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("synth", help="generate a synthetic cluster: OpenMetrics, CUR 2.0 export, truth")
    p.add_argument("--out", required=True)
    p.add_argument("--cluster-name", default="demo-eks")
    p.add_argument("--nodes", type=int, default=8)
    p.add_argument("--pods", type=int, default=80)
    p.add_argument("--hours", type=int, default=6)
    p.add_argument("--days", type=int, help="simulate this many days (overrides --hours)")
    p.add_argument("--start", type=parse_time, default=dt.datetime(2026, 11, 2, tzinfo=dt.UTC))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--cluster-label", help="add this label (value = cluster name) to every series (centralized mode)")
    p.set_defaults(func=cmd_synth)
    p = sub.add_parser("demo", help="run the whole pipeline on a synthetic cluster with a local stack")
    p.add_argument("--workdir", default=".podledger/demo")
    p.add_argument("--no-airflow", action="store_true", help="run the stages directly instead of through Airflow")
    p.add_argument("--keep-running", action="store_true", help="leave Prometheus and the S3 server running")
    p.add_argument("--hours", type=int, default=6, choices=range(1, 25), metavar="1..24",
                   help="hours of the demo day to synthesize and run (default 6)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)

if __name__ == "__main__":
    sys.exit(main())
