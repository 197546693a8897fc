"""The ``mptcp-fast`` command line (also ``python -m mptcp_fast``).

    mptcp-fast decode [HEX ...] [--segment KIND] [--json]
    mptcp-fast analyze [CAPTURE] [--json] [--dump-stream DIR]
    mptcp-fast demo [--size N] [--path RATE,DELAY[,LOSS] ...] [--scheduler S] [--cc CC]
                    [--seed N] [--checksums] [--pcap FILE] [--plot FILE.png] [--json] [--no-alone]
                    [--profile P] [--attack add-addr-hijack]

``decode`` takes the hex of one option or of a whole TCP options area (spaces
and colons allowed) and prints every option's fields. With no HEX it decodes
built-in examples captured from Linux 6.18.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import __version__, _backend, options

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


SHIPPED_CAPTURE = os.path.join(os.path.dirname(__file__), "data", "kernel-mptcp.pcap")


def _print_report(report: dict, out) -> None:
    print(f"{report['packets']} TCP packets, {report['mptcp_packets']} with MPTCP options, "
          f"{len(report['connections'])} MPTCP connection(s)", file=out)
    for c in report["connections"]:
        print(f"\nconnection {c['connection']}: MPTCP v{c['version']}, checksums "
              f"{'on' if c['checksums'] else 'off'}", file=out)
        print(f"  client key {c['client_key']} (token {c['client_token']}), server key "
              f"{c['server_key']} (token {c['server_token']})", file=out)
        if c["placed"] != "handshake":
            print(f"  placed {c['placed']}", file=out)
        if c["fallback"]:
            print(f"  FALLBACK to TCP at {c['fallback']}", file=out)
        for i, s in enumerate(c["subflows"], 1):
            join = "initial subflow" if s["initial"] else (
                f"MP_JOIN HMACs: SYN/ACK {s['join_synack_hmac']}, third ACK {s['join_ack_hmac']}")
            if not s["handshake_seen"]:
                join = "handshake not in the capture"
            print(f"  subflow {i}: {s['client']} -> {s['server']}  address ids "
                  f"{s['client_address_id']}/{s['server_address_id']}{'  backup' if s['backup'] else ''}"
                  f"  ({join})", file=out)
            reinjected = s["reinjected_bytes"]
            print(f"      bytes up {s['bytes']['up']:,} ({s['share']['up']:.1%}), down "
                  f"{s['bytes']['down']:,} ({s['share']['down']:.1%})"
                  + (f"; reinjected up {reinjected['up']:,}, down {reinjected['down']:,}"
                     if reinjected["up"] or reinjected["down"] else ""), file=out)
        for a in c["add_addr"]:
            port = f":{a['port']}" if a["port"] is not None else ""
            print(f"  ADD_ADDR packet {a['packet']} from the {a['from']}: id {a['address_id']} "
                  f"{a['address']}{port}, HMAC {a['hmac']}", file=out)
        for name, label in (("up", "client -> server"), ("down", "server -> client")):
            st = c["streams"][name]
            line = (f"  stream {label}: {st['data_bytes']:,} data-level bytes seen, "
                    f"{'complete' if st['complete'] else 'INCOMPLETE'}")
            if st["start_missing"]:
                line += (f" from DSN {st['start_dsn']} (the first byte seen: the connection's "
                         f"start is not in the capture)")
            if st["not_captured_bytes"]:
                line += f"; payload of {st['not_captured_bytes']:,} bytes not captured (snap length)"
            elif st["sha256"] is not None:
                line += f"; rebuilt {st['bytes']:,} bytes, sha256 {st['sha256']}"
            line += (f"; out of order {st['out_of_order_bytes']:,}, duplicate "
                     f"{st['duplicate_bytes']:,}, reinjected {st['reinjected_bytes']:,}")
            if st["conflict_bytes"]:
                line += f", CONFLICTING {st['conflict_bytes']:,}"
            if st["outside_window_bytes"]:
                line += f", outside any window {st['outside_window_bytes']:,} (2**63 or more ahead)"
            print(line, file=out)
        for e in c["events"]:
            print(f"  event packet {e['packet']}: {e['event']}", file=out)
        timing = c.get("timing")
        if timing:
            for sub in timing["subflows"]:
                rtt = sub["rtt_ms"]
                print(f"  subflow {sub['subflow']} RTT (seq/ack, ms p50/p90): up "
                      f"{_pair(rtt['up'])}, down {_pair(rtt['down'])}; retransmitted segments "
                      f"up {sub['retransmitted_segments']['up']}, down "
                      f"{sub['retransmitted_segments']['down']}", file=out)
            for name in ("up", "down"):
                d, r = timing["delivery_delay_ms"][name], timing["reinjection_delay_ms"][name]
                print(f"  {name}: delivery delay (ms p50/p90/p99) {_triple(d)}; reinjection "
                      f"delay {_triple(r)}", file=out)
        print("  anomalies: " + ("none" if not c["anomalies"] else ""), file=out)
        for a in c["anomalies"]:
            print(f"    {a}", file=out)


def _spool_stdin() -> tuple[str, bool]:
    """Standard input into a temporary file (a pipe cannot seek, and a capture without its
    handshakes is read twice); Ctrl-C ends the input, keeping what came. Returns the path and
    whether it was interrupted."""
    import tempfile
    spool = tempfile.NamedTemporaryFile(prefix="mptcp-fast-stdin-", suffix=".pcap",
                                        delete=False)
    interrupted = False
    with spool:
        try:                              # read1: what the pipe has now, so that Ctrl-C
            while chunk := sys.stdin.buffer.read1(1 << 20):      # loses nothing read
                spool.write(chunk)
        except KeyboardInterrupt:
            interrupted = True
    return spool.name, interrupted


def _dump_dir(base: str | None, path: str, several: bool) -> str | None:
    if base is None:
        return None
    where = os.path.join(base, os.path.basename(path) or "stdin") if several else base
    os.makedirs(where, exist_ok=True)
    return where


def _pair(stats) -> str:
    return "-" if stats is None else f"{stats['p50']:.2f}/{stats['p90']:.2f}"


def _triple(stats) -> str:
    return "-" if stats is None else f"{stats['p50']:.2f}/{stats['p90']:.2f}/{stats['p99']:.2f}"


def cmd_analyze(args, out=None) -> int:
    from .analyze import analyze_file
    out = out or sys.stdout
    paths = list(args.capture) or [SHIPPED_CAPTURE]
    if paths.count("-") > 1:
        print("mptcp-fast analyze: standard input ('-') can be read once", file=sys.stderr)
        return 2
    several = len(paths) > 1
    spooled, interrupted = None, False
    if "-" in paths:
        spooled, interrupted = _spool_stdin()
    names = [p if p != "-" else "-" for p in paths]
    files = [spooled if p == "-" else p for p in paths]
    dumps = [_dump_dir(args.dump_stream, n if n != "-" else "stdin", several) for n in names]
    try:
        if args.jobs > 1 and several:
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(args.jobs) as pool:
                reports = list(pool.map(analyze_file, files, dumps))
        else:
            reports = [_analyze_one(f, d, several) for f, d in zip(files, dumps)]
        extras = _timing_tables_plots(args, names, reports, files, several)
    finally:
        if spooled is not None:
            os.unlink(spooled)
    if extras:
        return extras
    status = 0
    for name, report in zip(names, reports):
        report["capture"] = name
        error = report.pop("error", None)
        cut_by_ctrl_c = name == "-" and interrupted and error is not None and \
            ("truncated" in error or "cut" in error)
        if error is not None and not cut_by_ctrl_c:
            print(f"mptcp-fast analyze: {name}: {error}", file=sys.stderr)
            status = 2
        if name == "-" and interrupted:
            report["interrupted"] = True
    if args.json:
        json.dump({"captures": reports} if several else reports[0], out, indent=2)
        print(file=out)
    else:
        for report in reports:
            if "connections" not in report:
                continue
            print(f"{report['capture']}:" + (" (interrupted)" if report.get("interrupted")
                                              else ""), file=out)
            _print_report(report, out)
    return status


def _timing_tables_plots(args, names, reports, files, several) -> int:
    """--timing / --plot (the numbers go into each report) and --parquet; 0, or 2 when a
    needed library is missing."""
    for name, report, path in zip(names, reports, files):
        if "connections" not in report:
            continue
        if args.timing or args.plot:
            from . import timeseries
            series = timeseries.all_series(report, path)
            for conn, one in zip(report["connections"], series):
                conn["timing"] = timeseries.summary(one)
            if args.plot:
                try:
                    for one in series:
                        timeseries.plot_connection(one, _dump_dir(args.plot, name, several))
                except timeseries.PlotError as exc:
                    print(f"mptcp-fast analyze: {exc}", file=sys.stderr)
                    return 2
        if args.parquet:
            from . import tables
            try:
                tables.write_parquet(report, path, _dump_dir(args.parquet, name, several))
            except ImportError as exc:
                print(f"mptcp-fast analyze: --parquet needs pyarrow ({exc}): pip install "
                      "'mptcp_fast[parquet]'", file=sys.stderr)
                return 2
    return 0


def _analyze_one(path, dump_dir, several: bool) -> dict:
    """One capture with a progress bar on a terminal (big single files only)."""
    from .analyze import analyze_file
    # tqdm: a maintained progress bar that handles terminal widths and rates, shown only
    # when stderr is a terminal (silent in pipes, CI and tests).
    from tqdm import tqdm
    size = os.path.getsize(path) if os.path.exists(path) else 0
    with tqdm(total=size, unit="B", unit_scale=True, desc="analyze", leave=False,
              disable=several or not sys.stderr.isatty() or size < (16 << 20)) as bar:
        return analyze_file(path, dump_dir, progress=lambda offset: bar.update(offset - bar.n))


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


def _path(text: str):
    from .demo import parse_path
    try:
        return parse_path(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _mbit(bps: float) -> str:
    return f"{bps / 1e6:,.1f} Mbit/s"


def _attack(args, out) -> int:
    """``demo --attack add-addr-hijack``: the forged ADD_ADDR against each profile."""
    from . import attacks
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


def cmd_demo(args, out=None) -> int:
    from . import demo
    out = out or sys.stdout
    if args.attack:
        return _attack(args, out)
    paths = args.path or list(demo.DEFAULT_PATHS)
    try:
        result = demo.run_demo(args.size, paths, scheduler=args.scheduler, cc=args.cc,
                               seed=args.seed, checksums=args.checksums, pcap=args.pcap,
                               alone=not args.no_alone, profile=args.profile or "v1")
        if args.plot:
            demo.plot(result, args.plot)
    except (RuntimeError, OSError) as exc:
        print(f"mptcp-fast demo: {exc}", file=sys.stderr)
        return 2
    if args.json:
        slim = {**result, "multipath": {k: v for k, v in result["multipath"].items()
                                         if k != "samples"},
                "alone": [{k: v for k, v in a.items() if k != "samples"} for a in result["alone"]]}
        json.dump(slim, out, indent=2)
        print(file=out)
        return 0
    m = result["multipath"]
    print(f"MPTCP demo: {args.size:,} bytes client -> server, scheduler {args.scheduler}, "
          f"congestion control {args.cc}, seed {args.seed} (backend {_backend.active()})", file=out)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mptcp-fast", description="Fast Multipath TCP tools.")
    parser.add_argument("--version", action="version",
                        version=f"mptcp-fast {__version__} (backend: {_backend.active()})")
    sub = parser.add_subparsers(dest="command", required=True)
    dec = sub.add_parser("decode", help="decode MPTCP / TCP options from hex",
                         description="Decode one option or a whole TCP options area. "
                                     "With no HEX, decode built-in examples captured from Linux. "
                                     "Exit status 1 if an option was malformed.")
    dec.add_argument("hex", nargs="*", help="hex bytes (spaces and colons allowed)")
    dec.add_argument("--segment", choices=sorted(_SEGMENTS),
                     help="apply the Linux acceptance rules for this kind of segment")
    dec.add_argument("--json", action="store_true", help="print JSON instead of a table")
    dec.set_defaults(func=cmd_decode)
    ana = sub.add_parser("analyze", help="analyse the MPTCP connections of a capture",
                         description="Connections, subflows, HMAC verdicts, DSS checksums and the "
                                     "rebuilt data stream of each direction. With no CAPTURE, a "
                                     "small capture of Linux kernel MPTCP shipped with the package. "
                                     "Exit status 2 when the file is cut or corrupt (the report "
                                     "covers what came before).")
    ana.add_argument("capture", nargs="*",
                     help="pcap or pcapng files; '-' reads one from standard input "
                          "(e.g. tcpdump -w - | mptcp-fast analyze -)")
    ana.add_argument("--json", action="store_true",
                     help="print the report as JSON (several files: {\"captures\": [...]})")
    ana.add_argument("--dump-stream", metavar="DIR",
                     help="write each connection's rebuilt bytes per direction to DIR "
                          "(several files: DIR/<file name>/)")
    ana.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="analyse several files on N processes")
    ana.add_argument("--timing", action="store_true",
                     help="add per-subflow RTTs and retransmissions, and per-direction "
                          "delivery and reinjection delays (percentiles) to the report")
    ana.add_argument("--plot", metavar="DIR",
                     help="PNG figures per connection (sequence graph, throughput per subflow, "
                          "delivery): needs matplotlib, pip install 'mptcp_fast[plot]'; implies "
                          "--timing")
    ana.add_argument("--parquet", metavar="DIR",
                     help="write per-packet, per-subflow and per-connection tables (Parquet, "
                          "needs pyarrow: pip install 'mptcp_fast[parquet]')")
    ana.set_defaults(func=cmd_analyze)
    from .engine.cc import CONTROLLERS
    from .engine.scheduler import SCHEDULERS
    dem = sub.add_parser("demo", help="two userspace MPTCP engines over emulated paths",
                         description="A client and a server engine transfer data over emulated "
                                     "paths (virtual time, deterministic from the seed), then the "
                                     "same transfer over each path alone. Prints per-subflow "
                                     "bytes and throughput, the goodput against each path alone, "
                                     "and how fast this machine ran it.")
    dem.add_argument("--size", type=_size, default=16 << 20,
                     help="bytes to send (16M by default; k, M, G suffixes)")
    dem.add_argument("--path", type=_path, action="append", metavar="RATE,DELAY[,LOSS]",
                     help="a path: rate, one-way delay and random loss, e.g. 100M,10ms or "
                          "50M,40ms,0.05%% (repeat for more; default: 100M,10ms and "
                          "50M,40ms,0.05%%)")
    dem.add_argument("--scheduler", choices=sorted(SCHEDULERS), default="lowest-rtt")
    dem.add_argument("--cc", choices=sorted(CONTROLLERS), default="lia",
                     help="congestion control per subflow (lia is coupled, RFC 6356)")
    dem.add_argument("--seed", type=int, default=1, help="the emulated network's random seed")
    dem.add_argument("--checksums", action="store_true", help="negotiate DSS checksums")
    dem.add_argument("--pcap", metavar="FILE", help="write the multipath run's packets here")
    dem.add_argument("--plot", metavar="FILE.png",
                     help="plot throughput per subflow over time (needs matplotlib)")
    dem.add_argument("--json", action="store_true", help="print the results as JSON")
    dem.add_argument("--no-alone", action="store_true",
                     help="skip the runs over each path alone")
    from .engine.config import PROFILES
    dem.add_argument("--profile", choices=PROFILES,
                     help="MPTCP version: v1 (RFC 8684, default), v0 (RFC 6824), v0+add_addr2")
    dem.add_argument("--attack", choices=["add-addr-hijack"],
                     help="play an attack instead: the forged ADD_ADDR of the IETF-87 slides, "
                          "against v0, v1 and v0+add_addr2 (or --profile)")
    dem.set_defaults(func=cmd_demo)
    from . import netcli
    netcli.add_parsers(sub, _size)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:                   # `mptcp-fast analyze | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
