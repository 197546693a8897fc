"""The ``mptcp-fast`` command line (also ``python -m mptcp_fast``): one entry point, a module per
subcommand group.

    mptcp-fast decode [HEX ...] [--segment KIND] [--json]            (cli/decode.py)
    mptcp-fast analyze [CAPTURE ...] [--json] [--dump-stream DIR] ...  (cli/analyze.py)
    mptcp-fast demo [--size N] [--path RATE,DELAY[,LOSS] ...] ...     (cli/demo.py)
    mptcp-fast serve | connect | proxy ...                            (cli/net.py)
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import _backend
from .._version import __version__
from . import analyze, decode, demo, net


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    lowered = text.strip().lower().rstrip("ib").rstrip("b") if text.strip()[-1:].isalpha() else text
    scale = units.get(lowered[-1:], 1) if lowered[-1:].isalpha() else 1
    try:
        value = int(float(lowered[:-1] if scale != 1 else lowered) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 16M, 500k, 1048576)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the size must be above 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mptcp-fast", description="Fast Multipath TCP tools.")
    parser.add_argument("--version", action="version",
                        version=f"mptcp-fast {__version__} (backend: {_backend.active()})")
    sub = parser.add_subparsers(dest="command", required=True)
    decode.add_parser(sub)
    analyze.add_parser(sub)
    demo.add_parser(sub, _size)
    net.add_parsers(sub, _size)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:                   # `mptcp-fast analyze | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
