"""The ``n3d`` command line, over the same pipeline the ROS node uses.

Each subcommand lives in its own module exposing ``register(subparsers)``; the module's handler
returns an exit code. Input errors print one clear line to stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from ..core.types import InputError

SUBCOMMANDS = ("scene", "detect", "ask", "export_gguf")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="n3d", description="N3D-VLM 3D grounding and spatial questions on RGB-D frames")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (InputError, FileNotFoundError) as exc:
        print(f"n3d {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
