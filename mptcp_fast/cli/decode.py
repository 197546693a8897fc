"""``mptcp-fast decode``: the fields of one MPTCP/TCP option or of a whole options area, from hex.

With no HEX it decodes built-in examples captured from Linux 6.18.
"""

from __future__ import annotations

import json
import sys

from ..wire import options
from . import HelpFormatter

# Option areas seen on the wire from Linux 6.18 (docs/kernel-behaviour.md).
EXAMPLES = [
    ("SYN of a kernel client (MSS, SACK_PERM, TS, WS, MP_CAPABLE)",
     "020405b40402080a0001e24000000000010303071e040101", options.Segment.SYN),
    ("SYN/ACK with the server key", "1e0c01011c5a07c724183a63", options.Segment.SYN_ACK),
    ("third ACK with both keys", "1e1401018eb52e2ffe8cc1751c5a07c724183a63", options.Segment.ACK),
    ("data segment: TS + 64-bit DSS with checksum",
     "0101080a0001e2400001e23f1e1c200f43143b25bce216b29a915667704f82010000000107d0c3c8",
     options.Segment.DATA),
    ("ADD_ADDR of 10.0.3.1 port 10001 with its HMAC",
     "1e1230010a0003012711118607e7815b7f4d0101", options.Segment.ACK),
    ("MP_JOIN SYN to token 081d2af6", "1e0c1002081d2af62b5da663", options.Segment.SYN),
    ("MP_JOIN SYN/ACK with the truncated HMAC", "1e101001727bd9c894992e352bc41846",
     options.Segment.SYN_ACK),
    ("MP_JOIN third ACK with the 160-bit HMAC", "1e18100022abd0d9996ce8c26e72e75dd7a0143c4e6221d1",
     options.Segment.ACK),
    ("fast close: RST with MP_FASTCLOSE and MP_TCPRST",
     "1e0c70008eb52e2ffe8cc1751e048000", options.Segment.RST),
]

_SEGMENTS = {s.value: s for s in options.Segment}


def _decode_area(raw: bytes, segment) -> tuple[list[dict], bool]:
    """Every option of ``raw`` as a dict with its offset; and whether any was malformed."""
    rows = []
    offset = 0
    malformed = False
    for opt in options.parse_tcp_options(raw, segment, keep_malformed=True):
        size = len(opt.encode())
        row = {"offset": offset, "length": size, **opt.to_dict()}
        rows.append(row)
        malformed |= isinstance(opt, options.MalformedOption)
        offset += size
    return rows, malformed


_HEX_FIELDS = {"flags": 2, "token": 8, "nonce": 8, "checksum": 4}


def _format_value(key: str, value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "[" + ", ".join(_format_value("", v) for v in value) + "]"
    if key in _HEX_FIELDS and isinstance(value, int):
        return f"0x{value:0{_HEX_FIELDS[key]}x}"
    if isinstance(value, int) and value > 0xFFFF:
        return f"{value} (0x{value:x})"
    return str(value)


def _print_table(title: str, hex_text: str, rows: list[dict], out) -> None:
    print(f"{title}" if title else f"{hex_text}", file=out)
    if title:
        print(f"  bytes: {hex_text}", file=out)
    print(f"  {'off':>3} {'len':>3}  {'option':<15} fields", file=out)
    for row in rows:
        fields = "  ".join(f"{k}={_format_value(k, v)}" for k, v in row.items()
                           if k not in ("offset", "length", "option") and v is not None)
        print(f"  {row['offset']:>3} {row['length']:>3}  {row['option']:<15} {fields}", file=out)
    print(file=out)


def _parse_hex(text: str) -> bytes:
    cleaned = "".join(text.split()).replace(":", "").replace("0x", "")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise SystemExit(f"mptcp-fast decode: not hex: {text!r}") from None


def cmd_decode(args, out=None) -> int:
    out = out or sys.stdout
    segment = _SEGMENTS[args.segment] if args.segment else None
    if args.hex:
        if not "".join(args.hex).strip(" :"):
            raise SystemExit("mptcp-fast decode: nothing to decode: the hex is empty")
        jobs = [("", "".join(args.hex), segment)]
    else:
        jobs = [(title, hex_text, segment or seg) for title, hex_text, seg in EXAMPLES]
    results = []
    any_malformed = False
    for title, hex_text, seg in jobs:
        raw = _parse_hex(hex_text)
        rows, malformed = _decode_area(raw, seg)
        any_malformed |= malformed
        results.append({"title": title or None, "hex": raw.hex(),
                        "segment": seg.value if seg else None, "options": rows})
        if not args.json:
            _print_table(title, raw.hex(), rows, out)
    if args.json:
        json.dump(results, out, indent=2)
        print(file=out)
    return 1 if any_malformed else 0


def add_parser(sub) -> None:
    """The ``decode`` subcommand."""
    dec = sub.add_parser("decode", formatter_class=HelpFormatter,
                         help="decode MPTCP / TCP options from hex",
                         description="Decode one option or a whole TCP options area. "
                                     "With no HEX, decode built-in examples captured from Linux. "
                                     "Exit status 1 if an option was malformed.")
    dec.add_argument("hex", nargs="*", help="hex bytes (spaces and colons allowed) (default: built-in "
                          "examples captured from Linux)")
    dec.add_argument("--segment", choices=sorted(_SEGMENTS),
                     help="apply the Linux acceptance rules for this kind of segment "
                          "(default: none, decode context-free)")
    dec.add_argument("--json", action="store_true", help="print JSON instead of a table")
    dec.set_defaults(func=cmd_decode)
