"""The headline comparison: `mptcp-fast analyze` (compiled, pure) vs tshark's MPTCP
analysis over the same capture, one after the other in one run, nothing else running.

    python bench/compare_analyze.py CAPTURE [--skip-tshark] [--skip-pure] [--plot]
    python bench/compare_analyze.py CAPTURE --outputs [--runs 3]

``--plot`` adds a run of the compiled backend with ``--plot DIR`` (the time series and the
figures of each connection). ``--outputs`` measures, on the compiled backend, plain ``analyze`` and
``analyze --plot DIR --parquet DIR`` of the same file in alternation (best of ``--runs``) and
prints the ratio: what the outputs cost on top of the analysis (the file is read once for all),
in wall time and in CPU time (user + system, the figure process included).

Wall time and peak RSS of each as a separate process (GNU time -v).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys


def measure(cmd: list[str], env=None) -> tuple[float, int]:
    """(wall seconds, peak RSS MiB) of ``cmd`` as a process of its own."""
    wall, rss, _ = measure_with_cpu(cmd, env)
    return wall, rss


def measure_with_cpu(cmd: list[str], env=None) -> tuple[float, int, float]:
    """(wall seconds, peak RSS MiB, CPU seconds: user + system, its children included)."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=env)
    if proc.returncode not in (0,):
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr[-500:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)",
                     proc.stderr)
    hours, minutes, seconds = (float(x) if x else 0.0 for x in wall.groups())
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", proc.stderr).group(1))
              for kind in ("User", "System"))
    return hours * 3600 + minutes * 60 + seconds, rss // 1024, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture")
    parser.add_argument("--skip-tshark", action="store_true")
    parser.add_argument("--skip-pure", action="store_true")
    parser.add_argument("--plot", action="store_true")
    parser.add_argument("--outputs", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.outputs:
        return outputs_ratio(args.capture, args.runs)
    packets = subprocess.run([sys.executable, "-c", "import sys; from mptcp_fast.analysis import capture\n"
                              "r = capture.open_capture(sys.argv[1]); print(sum(1 for _ in r))",
                              args.capture], capture_output=True, text=True, check=True).stdout
    n = int(packets)
    rows = []
    analyze = [sys.executable, "-m", "mptcp_fast", "analyze", args.capture]
    rows.append(("mptcp-fast analyze (compiled)", *measure(analyze)))
    if args.plot:
        import tempfile
        with tempfile.TemporaryDirectory() as plots:
            rows.append(("mptcp-fast analyze --plot DIR (compiled)",
                         *measure(analyze + ["--plot", plots])))
    if not args.skip_pure:
        rows.append(("mptcp-fast analyze (pure, MPTCP_FAST_PURE=1)",
                     *measure(analyze, env=dict(os.environ, MPTCP_FAST_PURE="1"))))
    if not args.skip_tshark:
        rows.append(("tshark -2 -o mptcp.analyze_mptcp:TRUE -o mptcp.analyze_mappings:TRUE",
                     *measure(["tshark", "-2", "-o", "mptcp.analyze_mptcp:TRUE", "-o",
                               "mptcp.analyze_mappings:TRUE", "-r", args.capture])))
    base = rows[0][1]
    print(f"# {args.capture}: {n:,} packets\n")
    print("| run | seconds | packets/s | vs compiled | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds, rss in rows:
        print(f"| {name} | {seconds:.2f} | {n / seconds:,.0f} | {seconds / base:.2f}x | {rss} |")
    return 0


def outputs_ratio(capture: str, runs: int) -> int:
    """Plain analyze against analyze --plot DIR --parquet DIR, alternating, best of ``runs``
    (wall time), with the CPU time (user + system) of each run and the load average."""
    import tempfile
    analyze = [sys.executable, "-m", "mptcp_fast", "analyze", capture]
    plain, everything = [], []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as where:
        outputs = ["--plot", os.path.join(where, "plots"), "--parquet",
                   os.path.join(where, "tables")]
        for _ in range(runs):
            plain.append(measure_with_cpu(analyze))
            everything.append(measure_with_cpu(analyze + outputs))
    print(f"# {capture}, compiled backend, best of {runs} alternating runs, load average "
          f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n")
    print("| run | seconds (each run) | best | CPU s (each run) | peak RSS MiB (best run) |")
    print("|---|---|---:|---|---:|")
    for name, results in (("mptcp-fast analyze", plain),
                          ("mptcp-fast analyze --plot DIR --parquet DIR", everything)):
        best = min(results)
        print(f"| {name} | {', '.join(f'{s:.2f}' for s, _, _ in results)} | {best[0]:.2f} | "
              f"{', '.join(f'{c:.2f}' for _, _, c in results)} | {best[1]} |")
    print(f"\nratio (best --plot --parquet / best plain): "
          f"{min(everything)[0] / min(plain)[0]:.2f}x; CPU (least / least): "
          f"{min(c for _, _, c in everything) / min(c for _, _, c in plain):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
