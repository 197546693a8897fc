"""One case of compare_tun.py's engine side, measured and optionally profiled: the engine on a
TUN device against the lean kernel MPTCP server in a namespace; goodput, the engine process's
CPU seconds per GiB (user and system: the kernel's receive path runs in the device writes),
the device's counters and, with ``--profile``, where py-spy found the engine's loop.

    python bench/profile_tun.py --size 1G --subflows 1 --direction up
    python bench/profile_tun.py --direction down --no-offload --profile /tmp/down.txt
    python bench/profile_tun.py --direction down --copy-payloads   # as before receive_views

The profile (``py-spy record --native -r 500 -f raw``, ``pip install py-spy``) is split by
the part of the loop each sample is in: reading the device, writing it, the engine taking
packets, the engine making them, timers, the application, the rest. Root only.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import compare_tun  # noqa: E402
from mptcp_fast.cli.main import _size as parse_size  # noqa: E402  (the CLI's sizes)
from mptcp_fast.testing.testbed import TunBed  # noqa: E402

# the frames that name a part of the loop (compiled: py-spy's names of the C functions;
# pure: the Python ones); a sample belongs to the outermost part on its stack
PARTS = {"device write": ("TunDevice.write_batch", "TunDevice.write"),
         "device read": ("TunDevice.read_batch",),
         "engine receive": ("Endpoint_receive_packet", "Endpoint.receive_packet"),
         "engine send": ("Endpoint_packets_to_send", "Endpoint.packets_to_send",
                 "Endpoint_packets_to_write", "Endpoint.packets_to_write"),
         "timers": ("Endpoint_handle_timer", "Endpoint.handle_timer"),
         "application": ("BulkApp_run", "BulkApp.run")}
PART_OF = {name: part for part, names in PARTS.items() for name in names}


def split(path: str) -> dict[str, float]:
    """Shares of the samples inside TunHost.run, by part (py-spy raw: "frame;frame count")."""
    counts: collections.Counter[str] = collections.Counter()
    with open(path) as lines:
        for line in lines:
            stack, _, n = line.rstrip().rpartition(" ")
            names = [frame.split(" (")[0] for frame in stack.split(";")]
            if "TunHost.run" not in names:
                continue                          # start-up: imports, the device's set-up
            part = next((PART_OF[name] for name in names if name in PART_OF), "rest of the loop")
            counts[part] += int(n)
    total = sum(counts.values()) or 1
    return {part: counts[part] / total for part in [*PARTS, "rest of the loop"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=1 << 30)
    parser.add_argument("--subflows", type=int, choices=(1, 2), default=1)
    parser.add_argument("--direction", choices=("up", "down"), default="up",
                        help="up: engine -> kernel; down: kernel -> engine")
    parser.add_argument("--no-offload", action="store_true")
    parser.add_argument("--pure", action="store_true", help="the pure-Python backend")
    parser.add_argument("--profile", metavar="OUT", help="record with py-spy into OUT")
    parser.add_argument("--copy-payloads", action="store_true",
                        help="the engine copies every received payload (receive_views off, "
                             "as before it existed): the comparison for that change")
    args = parser.parse_args()
    offload, upload = not args.no_offload, args.direction == "up"
    env = dict(os.environ)
    env.pop("MPTCP_FAST_PURE", None)
    if args.pure:
        env["MPTCP_FAST_PURE"] = "1"
    with TunBed(name="mfr", paths=2, offload=offload) as bed:
        bed.device.close()                        # the child makes its own, of that name
        server = compare_tun._kernel_server(bed.ns, "sink" if upload else "send", args.size)
        child_code = compare_tun.ENGINE_CHILD
        if args.copy_payloads:
            marker = "host = TunHost(app, device)"
            assert marker in child_code
            child_code = child_code.replace(marker, "endpoint.receive_views = False\n" + marker)
        command = [sys.executable, "-c", child_code
                   + "\nprint(json.dumps(device.stats), flush=True)\n",
                   str(args.size), str(args.subflows), args.direction, "1" if offload else "0",
                   bed.ns.name, bed.device.name]
        if args.profile:
            command = ["py-spy", "record", "--native", "-r", "500", "-f", "raw", "-o",
                       args.profile, "--"] + command
        child = subprocess.Popen(command, env=env, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while (line := child.stdout.readline()).strip() != "ready":   # (py-spy says hello)
            if not line:
                raise RuntimeError(child.stderr.read())
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        child.stdin.write("go\n")
        child.stdin.flush()
        out, err = child.communicate(timeout=900)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        server.communicate(timeout=60)
    found = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if len(found) < 2:
        raise RuntimeError(err)
    result, stats = found[-2], found[-1]
    gib = args.size / (1 << 30)
    print(f"{args.direction} {args.subflows} subflow(s) offload={offload} {result['backend']}: "
          f"{result['mbit']:,.0f} Mbit/s, ok={result['ok']}; CPU per GiB (with start-up): "
          f"user {(after.ru_utime - before.ru_utime) / gib:.2f} s, "
          f"system {(after.ru_stime - before.ru_stime) / gib:.2f} s; load "
          f"{os.getloadavg()[0]:.1f}")
    print("device:", stats)
    if args.profile:
        for part, share in split(args.profile).items():
            print(f"  {share:6.1%}  {part}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
