"""``edgefleet-sim``: the simulators' command line.

    edgefleet-sim fpga boards [--output json]
    edgefleet-sim fpga compile MODEL --board B [-o OUT] [--reuse-factor N] [--max-utilization F] [--output json]
    edgefleet-sim fleet --devices N --hub URL [--broker URL] [--fpga BOARD [--fpga-faults SPEC]] [--label K=V]

Each top-level area registers its own subcommands (``register(subparsers)``) and sets ``func``;
add one (e.g. ``fleet``) by registering it in ``build_parser``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from edgefleet.simulators import fleet
from edgefleet.simulators.errors import SimulatorError
from edgefleet.simulators.fpga import commands as fpga_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgefleet-sim", description="edgefleet simulators")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    areas = parser.add_subparsers(dest="area", required=True, metavar="AREA")
    fpga_commands.register(areas)
    fleet.register(areas)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except SimulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
