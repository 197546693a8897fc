"""``mptcp-fast demo``: two userspace engines over emulated paths (``mptcp_fast.sim``), or an
attack played against them."""

from __future__ import annotations

import argparse
import json
import sys

from .. import _backend
from . import HelpFormatter, size_bar

def _path(text: str):
    from ..sim.demo import parse_path
    try:
        return parse_path(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Progress:
    """The demo's progress: a bar per run on a terminal (tqdm, on stderr; none when not shown),
    and where it stood, for a Ctrl-C."""

    def __init__(self, size: int, shown: bool):
        self.size, self.shown = size, shown
        self.run: str | None = None
        self.delivered = 0
        self.finished: list[str] = []
        self.bar = None

    def __call__(self, run: str, delivered: int) -> None:
        if run != self.run:
            if self.run is not None:
                self.finished.append(self.run)
            self.close()
            self.run = run
            if self.shown:
                self.bar = size_bar(self.size, run)
        self.delivered = delivered
        if self.bar is not None:
            self.bar.update(delivered - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def where(self) -> str:
        """Where the demo stood: the run and its bytes delivered, the runs done before."""
        if self.run is None:
            return "before the first transfer started"
        done = f" (done: {', '.join(self.finished)})" if self.finished else ""
        return (f"during the {self.run} run, {self.delivered:,} of {self.size:,} bytes "
                f"delivered{done}")


def _mbit(bps: float) -> str:
    return f"{bps / 1e6:,.1f} Mbit/s"


def _attack(args, out) -> int:
    """``demo --attack add-addr-hijack``: the forged ADD_ADDR against each profile."""
    from ..sim import attacks
    profiles = [args.profile] if args.profile else ["v0", "v1", "v0+add_addr2"]
    size = max(1 << 20, min(args.size, 4 << 20))        # long enough to see the subflow work
    results = [attacks.add_addr_hijack(p, size=size, seed=args.seed)
               for p in profiles]
    if args.json:
        json.dump(results, out, indent=2)
        print(file=out)
        return 0
    print("ADD_ADDR hijack (IETF-87 slides; RFC 7430 §3): an off-path attacker who knows the "
          "4-tuple and sequence numbers\ninjects an ADD_ADDR for its own address "
          f"({attacks.ATTACKER}) and relays whatever subflow the client opens to it.", file=out)
    for r in results:
        if r["hijacked"]:
            verdict = (f"HIJACKED: the client joined the attacker, {r['client_bytes_via_attacker']:,}"
                       f" bytes of its data went through it")
        else:
            verdict = (f"refused: the forged ADD_ADDR failed its HMAC and was dropped "
                       f"({r['forged_add_addr_dropped']}), no subflow to the attacker")
        print(f"  {r['profile']:13} {verdict}; transfer byte-exact: "
              f"{'yes' if r['transfer_exact'] else 'NO'}", file=out)
    return 0


def _without_samples(run: dict) -> dict:
    return {k: v for k, v in run.items() if k != "samples"}


def _window_text(window) -> str:
    return "Config's (512 KiB, growing to 4 MiB)" if window is None else f"{window >> 10:,} KiB"


def cmd_demo(args, out=None) -> int:
    from ..sim import demo
    out = out or sys.stdout
    if args.size is None:
        args.size = demo.SCHEDULER_SIZE if args.preset == "schedulers" else 16 << 20
    if args.attack:
        return _attack(args, out)
    if args.preset == "schedulers":
        return _schedulers(args, out)
    paths = args.path or list(demo.DEFAULT_PATHS)
    progress = _Progress(args.size, shown=not args.json and sys.stderr.isatty())
    try:
        result = demo.run_demo(args.size, paths, scheduler=args.scheduler, cc=args.cc,
                               seed=args.seed, checksums=args.checksums, pcap=args.pcap,
                               alone=not args.no_alone, profile=args.profile or "v1",
                               progress=progress, receive_window=args.receive_window)
        if args.plot:
            demo.plot(result, args.plot)
    except (RuntimeError, OSError) as exc:
        progress.close()
        print(f"mptcp-fast demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:                 # Ctrl-C: what was done so far, and 130
        progress.close()
        print(f"mptcp-fast demo: interrupted {progress.where()}", file=sys.stderr)
        return 130
    progress.close()
    if args.json:
        slim = {**result, "multipath": _without_samples(result["multipath"]),
                "alone": [_without_samples(a) for a in result["alone"]]}
        json.dump(slim, out, indent=2)
        print(file=out)
        return 0
    m = result["multipath"]
    print(f"MPTCP demo: {args.size:,} bytes client -> server, scheduler {args.scheduler}, "
          f"congestion control {args.cc}, seed {args.seed} (backend {_backend.active()})", file=out)
    if args.receive_window is not None:
        print(f"  receive window: {_window_text(args.receive_window)}", file=out)
    for i, spec in enumerate(paths):
        print(f"  path {i}: {spec}", file=out)
    print(f"\nmultipath: {m['completion_seconds']:.3f} s of virtual time, goodput "
          f"{_mbit(m['goodput_bps'])}, byte-exact {'yes' if m['exact'] else 'NO'} "
          f"(sha256 {m['sha256'][:16]}...)", file=out)
    for sub in m["subflows"]:
        print(f"  subflow {sub['id']} {sub['local']} -> {sub['remote']}: {sub['bytes']:,} bytes "
              f"({sub['share']:.1%}), {_mbit(sub['goodput_bps'])}, {sub['retransmits']} "
              f"retransmitted segments", file=out)
    if m["reinjected_bytes"]:
        print(f"  reinjected {m['reinjected_bytes']:,} bytes", file=out)
    for i, alone in enumerate(result["alone"]):
        gain = m["goodput_bps"] / alone["goodput_bps"] if alone["goodput_bps"] else float("inf")
        print(f"path {i} alone: {alone['completion_seconds']:.3f} s, {_mbit(alone['goodput_bps'])}"
              f" (multipath is {gain:.2f}x)", file=out)
    print(f"\nprocessing: {m['packets']:,} packets in {m['wall_seconds']:.2f} s of wall time "
          f"({_mbit(m['processing_bps'])} of goodput simulated per wall-clock second)", file=out)
    if args.pcap:
        print(f"capture: {args.pcap} (try: mptcp-fast analyze {args.pcap})", file=out)
    if args.plot:
        print(f"plot: {args.plot}", file=out)
    return 0 if m["exact"] else 1


def _schedulers(args, out) -> int:
    """``demo --preset schedulers``: the same transfer with every scheduler, side by side."""
    from ..sim import demo
    paths = args.path or list(demo.SCHEDULER_PATHS)
    window = args.receive_window if args.receive_window is not None else demo.SCHEDULER_WINDOW
    progress = _Progress(args.size, shown=not args.json and sys.stderr.isatty())
    try:
        result = demo.run_schedulers(args.size, paths, receive_window=window, cc=args.cc,
                                     seed=args.seed, profile=args.profile or "v1",
                                     progress=progress)
    except RuntimeError as exc:
        progress.close()
        print(f"mptcp-fast demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        progress.close()
        print(f"mptcp-fast demo: interrupted {progress.where()}", file=sys.stderr)
        return 130
    progress.close()
    runs = result["runs"]
    if args.json:
        slim = {**result, "runs": {name: _without_samples(r) for name, r in runs.items()},
                "alone": _without_samples(result["alone"])}
        json.dump(slim, out, indent=2)
        print(file=out)
        return 0
    print(f"MPTCP schedulers: {args.size:,} bytes client -> server with each scheduler, "
          f"receive window {_window_text(window)}, congestion control {args.cc}, seed "
          f"{args.seed} (backend {_backend.active()})", file=out)
    for i, spec in enumerate(paths):
        print(f"  path {i}: {spec}", file=out)
    # the bytes each subflow sent, and that as a share of the data (redundant: above 100 %)
    header = "".join(f"{f'path {i} bytes':>20}" for i in range(len(paths)))
    print(f"\n{'scheduler':12} {'completion':>10} {'goodput':>13}{header}  reinjected",
          file=out)
    for name, run in runs.items():
        carried = "".join(f"{s['bytes']:>13,} ({s['bytes'] / args.size:4.0%})"
                          for s in run["subflows"])
        print(f"{name:12} {run['completion_seconds']:8.3f} s {_mbit(run['goodput_bps']):>13}"
              f"{carried}  {run['reinjected_bytes']:>10,}", file=out)
    alone = result["alone"]
    print(f"{'path 0 alone':12} {alone['completion_seconds']:8.3f} s "
          f"{_mbit(alone['goodput_bps']):>13}", file=out)
    exact = all(r["exact"] for r in runs.values()) and alone["exact"]
    print(f"\nevery transfer byte-exact: {'yes' if exact else 'NO'}", file=out)
    return 0 if exact else 1


def add_parser(sub, size_type) -> None:
    """The ``demo`` subcommand; ``size_type`` parses ``--size``."""
    from ..engine.cc import CONTROLLERS
    from ..engine.scheduler import SCHEDULERS
    dem = sub.add_parser("demo", formatter_class=HelpFormatter,
                         help="two userspace MPTCP engines over emulated paths",
                         description="A client and a server engine transfer data over emulated "
                                     "paths (virtual time, deterministic from the seed), then the "
                                     "same transfer over each path alone. Prints per-subflow "
                                     "bytes and throughput, the goodput against each path alone, "
                                     "and how fast this machine ran it.")
    dem.add_argument("--size", type=size_type, default=None,
                     help="bytes to send (k, M, G suffixes) (default: 16M; 4M with "
                          "--preset schedulers)")
    dem.add_argument("--path", type=_path, action="append", metavar="RATE,DELAY[,LOSS]",
                     help="a path: rate, one-way delay and random loss, e.g. 100M,10ms or "
                          "50M,40ms,0.05%% (repeat for more) (default: 100M,10ms and "
                          "50M,40ms,0.05%%)")
    dem.add_argument("--scheduler", choices=sorted(SCHEDULERS), default="lowest-rtt",
                     help="which subflow sends next (lowest-rtt is Linux's default)")
    dem.add_argument("--receive-window", type=size_type, metavar="SIZE",
                     help="the server's receive window, fixed (default: Config's, 512 KiB "
                          "growing to 4 MiB as the server reads; 192K with --preset "
                          "schedulers)")
    dem.add_argument("--preset", choices=["schedulers"],
                     help="schedulers: the same transfer with every scheduler, side by side, "
                          "over a fast path and a slower one (50M,5ms and 10M,15ms unless "
                          "--path) under a small receive window (default: no preset)")
    dem.add_argument("--cc", choices=sorted(CONTROLLERS), default="lia",
                     help="congestion control per subflow (lia is coupled, RFC 6356)")
    dem.add_argument("--seed", type=int, default=1, help="the emulated network's random seed")
    dem.add_argument("--checksums", action="store_true", help="negotiate DSS checksums")
    dem.add_argument("--pcap", metavar="FILE", help="write the multipath run's packets here "
                                                          "(default: not written)")
    dem.add_argument("--plot", metavar="FILE.png",
                     help="plot throughput per subflow over time (needs matplotlib) "
                          "(default: no plot)")
    dem.add_argument("--json", action="store_true", help="print the results as JSON")
    dem.add_argument("--no-alone", action="store_true",
                     help="skip the runs over each path alone")
    from ..engine.config import PROFILES
    dem.add_argument("--profile", choices=PROFILES,
                     help="MPTCP version: v1 (RFC 8684), v0 (RFC 6824), v0+add_addr2 "
                          "(default: v1; with --attack, all three)")
    dem.add_argument("--attack", choices=["add-addr-hijack"],
                     help="play an attack instead: the forged ADD_ADDR of the IETF-87 slides, "
                          "against v0, v1 and v0+add_addr2 (or --profile) (default: no attack)")
    dem.set_defaults(func=cmd_demo)
