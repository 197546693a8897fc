"""Side-by-side benchmark: option parsing, compiled vs pure vs scapy vs a C loop.

    python bench/compare_options.py [--quick]

Everything is measured in this one run on this machine; the ratios are what
counts (absolute times on shared machines are noisy). Each figure is the best
of several timeit repeats, in nanoseconds per call.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import timeit

from mptcp_fast import _backend
from mptcp_fast.wire import options

HERE = os.path.dirname(os.path.abspath(__file__))

DSS28 = bytes.fromhex("1e1c200f43143b25bce216b29a915667704f82010000000107d0c3c8")
DATA_AREA = bytes.fromhex("0101080a0001e2400001e23f") + DSS28          # TS + DSS64 with checksum
SYN_AREA = bytes.fromhex("020405b40402080a0001e24000000000010303071e040101")

SUBTYPE_SAMPLES = {
    "MP_CAPABLE/20": "1e1401018eb52e2ffe8cc1751c5a07c724183a63",
    "MP_JOIN/12": "1e0c1002081d2af62b5da663",
    "MP_JOIN/24": "1e18100022abd0d9996ce8c26e72e75dd7a0143c4e6221d1",
    "DSS/28": DSS28.hex(),
    "DSS/8": "1e08200156788365",
    "ADD_ADDR/18": "1e1230010a0003012711118607e7815b7f4d",
    "REMOVE_ADDR/4": "1e044001",
    "MP_PRIO/3": "1e0351",
    "MP_FAIL/12": "1e0c600043143b25bce216b2",
    "MP_FASTCLOSE/12": "1e0c70008eb52e2ffe8cc175",
    "MP_TCPRST/4": "1e048001",
}


def best_ns(stmt, number: int, repeat: int = 7, **names) -> float:
    """Best of ``repeat`` runs of ``number`` calls, in ns per call (no lambda in the loop)."""
    return min(timeit.repeat(stmt, number=number, repeat=repeat, globals=names)) / number * 1e9


def tcp_header(area: bytes) -> bytes:
    import struct
    return struct.pack(">HHIIBBHHH", 40000, 10000, 1, 1, ((20 + len(area)) // 4) << 4, 0x10,
                       65535, 0, 0) + area


def scapy_ns(area: bytes, number: int) -> float | None:
    try:
        from scapy.layers.inet import TCP
    except ImportError:
        return None
    header = tcp_header(area)
    return best_ns("TCP(header).options", number, TCP=TCP, header=header)


def c_loop_ns() -> float | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "c_parse_dss")
        subprocess.run([cc, "-O2", "-o", exe, os.path.join(HERE, "c_parse_dss.c")], check=True)
        runs = [float(subprocess.run([exe, "50000000"], capture_output=True, text=True,
                                     check=True).stdout) for _ in range(3)]
    return min(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    args = parser.parse_args()
    n = 20_000 if args.quick else 200_000
    if "cython" not in _backend.available():
        print("the compiled backend is not built: nothing to compare", file=sys.stderr)
        return 1

    print(f"# option codec, {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} cores")
    # Build each measured call once per backend, then time the two backends in
    # alternation so that a noisy neighbour slows both sides alike.
    calls = {}
    for backend in ("cython", "python"):
        with _backend.use(backend):
            parse_option, parse_area = options.parse_option, options.parse_tcp_options
            calls[backend] = {
                "parse_option DSS/28": (parse_option, DSS28),
                "parse_tcp_options data segment (TS + DSS/28)": (parse_area, DATA_AREA),
                "parse_tcp_options SYN": (parse_area, SYN_AREA),
            }
            for name, hex_text in SUBTYPE_SAMPLES.items():
                raw = bytes.fromhex(hex_text)
                calls[backend][f"parse_option {name}"] = (parse_option, raw)
                calls[backend][f"encode {name}"] = (type(parse_option(raw)).encode, parse_option(raw))
    rows = {"cython": {}, "python": {}}
    for key in calls["cython"]:
        best = {"cython": float("inf"), "python": float("inf")}
        for _ in range(7):
            for backend in ("cython", "python"):
                with _backend.use(backend):
                    fn, arg = calls[backend][key]
                    best[backend] = min(best[backend], best_ns("fn(arg)", n, 1, fn=fn, arg=arg))
        for backend in best:
            rows[backend][key] = best[backend]

    print("\n| operation | compiled ns | pure ns | pure / compiled |")
    print("|---|---:|---:|---:|")
    for key in rows["cython"]:
        c, p = rows["cython"][key], rows["python"][key]
        print(f"| {key} | {c:.0f} | {p:.0f} | {p / c:.1f}x |")

    compiled_dss = rows["cython"]["parse_option DSS/28"]
    compiled_area = rows["cython"]["parse_tcp_options data segment (TS + DSS/28)"]
    print("\n| peer | ns per call | peer / compiled |")
    print("|---|---:|---:|")
    s_dss = scapy_ns(DSS28, n // 10)
    s_area = scapy_ns(DATA_AREA, n // 10)
    if s_dss is not None:
        print(f"| scapy TCP(header).options, header with DSS/28 | {s_dss:.0f} | "
              f"{s_dss / compiled_dss:.0f}x (vs parse_option DSS/28) |")
        print(f"| scapy TCP(header).options, TS + DSS/28 | {s_area:.0f} | "
              f"{s_area / compiled_area:.0f}x (vs parse_tcp_options) |")
    else:
        print("| scapy | not installed | - |")
    c_ns = c_loop_ns()
    if c_ns is not None:
        print(f"| plain C loop parsing DSS/28 (gcc -O2, no Python objects) | {c_ns:.1f} | "
              f"compiled is {compiled_dss / c_ns:.0f}x slower |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
