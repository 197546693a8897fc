"""The capture reader's decode pass: capture columns, compiled vs pure, and tshark reading the same
file, side by side in one run.

    python bench/compare_capture.py [CAPTURE] [--make N_MB]

Without CAPTURE, a kernel MPTCP capture is made first (root; mptcp_fast.testing.kernel_capture,
headers only: snaplen 128, offloads off) with N_MB of upload (default 1200, ~1M packets).
The whole analysis (`mptcp-fast analyze` vs tshark's MPTCP analysis) is bench/compare_analyze.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time

from mptcp_fast import _backend
from mptcp_fast.analysis import capture
from mptcp_fast.testing import kernel_capture


def decode(path: str, backend: str) -> tuple[float, int]:
    with _backend.use(backend):
        start = time.perf_counter()
        count = 0
        with capture.open_capture(path) as reader:
            for batch in reader.columns(batch=65536, payloads=False):
                count += len(batch["seq"])
        return time.perf_counter() - start, count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", nargs="?", help="a pcap/pcapng file (default: make one)")
    parser.add_argument("--make", type=int, default=1200, help="MB to upload when making one")
    args = parser.parse_args()
    path = args.capture
    if path is None:
        path = os.path.join(tempfile.mkdtemp(), "kernel.pcap")
        kernel_capture.make_capture(path, upload=args.make * 1_000_000,
                                    download=args.make * 250_000, snaplen=128, offload=False)
    print(f"# capture decode, {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} cores; {path}: {os.path.getsize(path) / 2**20:.0f} MiB")
    compiled_s, n = decode(path, "cython")
    rss_compiled = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pure_s, n2 = decode(path, "python")
    assert n == n2
    print("\n| decode pass (columns, headers only) | seconds | packets/s | vs compiled |")
    print("|---|---:|---:|---:|")
    print(f"| compiled | {compiled_s:.2f} | {n / compiled_s:,.0f} | 1.0x |")
    print(f"| pure | {pure_s:.2f} | {n / pure_s:,.0f} | {pure_s / compiled_s:.1f}x slower |")
    if shutil.which("tshark"):
        start = time.perf_counter()
        subprocess.run(["tshark", "-r", path, "-T", "fields", "-e", "tcp.seq_raw"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        tshark_s = time.perf_counter() - start
        print(f"| tshark -T fields -e tcp.seq_raw (no MPTCP analysis) | {tshark_s:.2f} | "
              f"{n / tshark_s:,.0f} | {tshark_s / compiled_s:.1f}x slower |")
    print(f"\n{n:,} packets; peak RSS after the compiled pass: {rss_compiled:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
