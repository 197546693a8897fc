"""What the analyzer's hardening bounds: analysis time on captures of one-byte mappings, and
peak memory on a flood of checksummed mappings that never get their data.

    python bench/compare_hardening.py [--sizes 5000 20000 200000] [--timeout 300]
                                      [--flood-connections 100] [--backends cython python]

* one-byte mappings: one MPTCP v1 connection, then N data packets of one byte each, every
  one with its own DSS mapping (a peer that maps as finely as it can);
* checksum flood: C connections that negotiated DSS checksums, each sending 256 data-less
  packets that declare 65,535-byte checksummed mappings (a small capture that asks the
  analyzer to hold up to 16 MiB per connection for bytes that never come).

Each run is its own process (wall time, and peak RSS from GNU time), one backend after the
other in one run. The captures are built with the test suite's trace builder.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from mptcp_fast.wire.options import Dss  # noqa: E402
from mptcp_trace import Trace  # noqa: E402


def one_byte_mappings(packets: int) -> bytes:
    t = Trace()
    flow = t.connect(("198.18.0.1", 40000), ("198.18.0.2", 10000))
    for _ in range(packets):
        t.send(flow, "up", b"x")
    return t.pcap()


def checksum_flood(connections: int, mappings: int = 256) -> bytes:
    t = Trace(checksum=True)
    for c in range(connections):
        flow = t.connect(("198.18.0.1", 20000 + c), ("198.18.0.2", 10000))
        dsn = t.next_dsn["up"]
        for k in range(mappings):
            t.packet(flow, "up", [Dss(dsn=dsn + k * 65535, dsn64=True, subflow_seq=1 + k * 65535,
                                      data_len=65535, checksum=0x1234)])
    return t.pcap()


def measure(path: str, backend: str, timeout: float):
    env = dict(os.environ, MPTCP_FAST_PURE="1" if backend == "python" else "0")
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "mptcp_fast", "analyze", "--json", path]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, None, f"not finished in {timeout:.0f} s"
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)",
                     proc.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    if wall is None or rss is None:
        return None, None, f"failed: {proc.stderr[-300:]!r}"
    hours, minutes, seconds = (float(x) if x else 0.0 for x in wall.groups())
    note = "" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.splitlines()[-1] if proc.stderr else ''}"
    if "MemoryError" in proc.stderr:
        note = "MemoryError"
    return hours * 3600 + minutes * 60 + seconds, int(rss.group(1)) // 1024, note


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 200000])
    parser.add_argument("--flood-connections", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--backends", nargs="+", default=["cython", "python"])
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    import mptcp_fast
    print(f"# mptcp_fast from {Path(mptcp_fast.__file__).parent}\n")
    print("| capture | size | backend | seconds | peak RSS MiB | note |")
    print("|---|---:|---|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        cases = [(f"{n:,} one-byte mappings", one_byte_mappings(n)) for n in args.sizes]
        cases += [(f"{c} connections x 256 checksummed 65,535-byte mappings", checksum_flood(c))
                  for c in args.flood_connections]
        for name, data in cases:
            path = os.path.join(tmp, "capture.pcap")
            Path(path).write_bytes(data)
            for backend in args.backends:
                seconds, rss, note = measure(path, backend, args.timeout)
                shown = "-" if seconds is None else f"{seconds:.2f}"
                print(f"| {name} | {len(data) / 1e6:.1f} MB | {backend} | {shown} | "
                      f"{rss if rss is not None else '-'} | {note} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
