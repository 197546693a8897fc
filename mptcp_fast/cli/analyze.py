"""``mptcp-fast analyze``: the MPTCP connections of pcap/pcapng captures (the report of
``mptcp_fast.analysis``), with timing, plots and Parquet tables on request."""

from __future__ import annotations

import json
import os
import sys

from . import HelpFormatter

# A small capture of Linux kernel MPTCP, shipped as package data (mptcp_fast/data/).
SHIPPED_CAPTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                               "kernel-mptcp.pcap")


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
            backup = "  backup" if s["backup"] else ""
            print(f"  subflow {i}: {s['client']} -> {s['server']}  address ids "
                  f"{s['client_address_id']}/{s['server_address_id']}{backup}"
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
                line += (f"; payload of {st['not_captured_bytes']:,} bytes not captured "
                         "(snap length)")
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
            while chunk := sys.stdin.buffer.read1(1 << 20):  # type: ignore[union-attr]  # (a
                # BufferedReader, as the interpreter opens it) loses nothing read
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
    outputs = Outputs(timing=bool(args.timing or args.plot),
                      plot=[_dump_dir(args.plot, n, several) for n in names],
                      parquet=[_dump_dir(args.parquet, n, several) for n in names])
    try:
        if args.jobs > 1 and several:
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(args.jobs) as pool:
                done = list(pool.map(_analyze_with_outputs, files, dumps, outputs.per_file(),
                                     [False] * len(files)))
        else:
            done = [_analyze_with_outputs(f, d, o, not several)
                    for f, d, o in zip(files, dumps, outputs.per_file())]
    finally:
        if spooled is not None:
            os.unlink(spooled)
    reports = [report for report, _ in done]
    problems = [problem for _, problem in done if problem is not None]
    if problems:                          # a library --plot or --parquet needs is missing
        print(f"mptcp-fast analyze: {problems[0]}", file=sys.stderr)
        return 2
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


class Outputs:
    """What is made of each file besides the report: ``timing`` (also for plots), the plot
    and Parquet directories per file (None: not wanted)."""

    def __init__(self, timing: bool, plot: list, parquet: list):
        self.timing, self.plot, self.parquet = timing, plot, parquet

    def per_file(self) -> list:
        return [(self.timing, plot, parquet) for plot, parquet in zip(self.plot, self.parquet)]


def _analyze_with_outputs(path, dump_dir, outputs, progress_bar: bool) -> tuple:
    """One capture, read once (twice when flows must be placed without handshakes): its
    report with ``"timing"`` when asked, its figures and tables written from the same model.
    Returns (report, None), or (report, why) when a library an output needs is missing."""
    from ..analysis.model import small_pages
    timing, plot_dir, parquet_dir = outputs
    with small_pages():                   # the table and the series: big arrays, used once
        # the figures are drawn by a process forked now: it imports matplotlib while the
        # file is read, and draws while this one finishes the other outputs
        worker = None
        if plot_dir is not None:
            from ..analysis.figures import FigureWorker
            worker = FigureWorker()
        try:
            return _outputs_of_file(path, dump_dir, outputs, progress_bar, worker)
        finally:
            if worker is not None:
                worker.close()


def _outputs_of_file(path, dump_dir, outputs, progress_bar, worker) -> tuple:
    from ..analysis.model import model_of_file
    timing, plot_dir, parquet_dir = outputs
    packets = timing or parquet_dir is not None
    if progress_bar:
        model = _with_progress_bar(path, lambda progress: model_of_file(
            path, dump_dir, progress, packets=packets))
    else:
        model = model_of_file(path, dump_dir, packets=packets)
    report = model.report
    if "connections" not in report or model.packets is None:
        return report, None
    writer = None
    if parquet_dir is not None:
        # the tables are made and written on a thread (pyarrow is imported there, and Arrow
        # works without Python's lock) while the time series and the figures are made from
        # the same model
        import importlib.util
        from ..analysis import tables
        if importlib.util.find_spec("pyarrow") is None:
            return report, _no_pyarrow(ImportError("No module named 'pyarrow'"))
        writer = _Background(tables.write_tables, model, parquet_dir)
    problem = None
    if timing:
        from ..analysis import timeseries
        from ..analysis import figures
        ready = None
        if worker is not None:
            # each figure is handed to the worker as soon as its part of the series is made:
            # it is drawn while the rest of the series (and the next connection's) are made
            def ready(name, partial):
                worker.submit(figures.figure_data(partial, (name,)), plot_dir)
        series = timeseries.each_model_series(model, delivery_pairs=False, ready=ready)
        for conn, one in zip(report["connections"], series):
            conn["timing"] = timeseries.summary(one)
        if worker is not None:
            try:
                worker.results()
            except figures.PlotError as exc:
                problem = str(exc)
    if writer is not None:
        try:
            writer.result()
        except ImportError as exc:
            problem = problem or _no_pyarrow(exc)
    return report, problem


def _no_pyarrow(exc) -> str:
    return f"--parquet needs pyarrow ({exc}): pip install 'mptcp_fast[parquet]'"


class _Background:
    """``function(*args)`` on a thread; ``result()`` waits and raises what it raised."""

    def __init__(self, function, *args):
        import threading
        self._outcome = None
        self._thread = threading.Thread(target=self._run, args=(function, args), daemon=True)
        self._thread.start()

    def _run(self, function, args):
        try:
            self._outcome = (True, function(*args))
        except BaseException as exc:      # handed to the caller by result()
            self._outcome = (False, exc)

    def result(self):
        self._thread.join()
        ok, value = self._outcome
        if not ok:
            raise value
        return value


def _with_progress_bar(path, run):
    """``run(progress)`` with a progress bar on a terminal (big files only)."""
    # tqdm: a maintained progress bar that handles terminal widths and rates, shown only
    # when stderr is a terminal (silent in pipes, CI and tests).
    from tqdm import tqdm
    size = os.path.getsize(path) if os.path.exists(path) else 0
    with tqdm(total=size, unit="B", unit_scale=True, desc="analyze", leave=False,
              disable=not sys.stderr.isatty() or size < (16 << 20)) as bar:
        return run(lambda offset: bar.update(offset - bar.n))


def add_parser(sub) -> None:
    """The ``analyze`` subcommand."""
    ana = sub.add_parser("analyze", formatter_class=HelpFormatter,
                         help="analyse the MPTCP connections of a capture",
                         description="Connections, subflows, HMAC verdicts, DSS checksums and the "
                                     "rebuilt data stream of each direction. With no CAPTURE, a "
                                     "small capture of Linux kernel MPTCP shipped with the "
                                     "package. Exit status 2 when the file is cut or corrupt "
                                     "(the report covers what came before).")
    ana.add_argument("capture", nargs="*",
                     help="pcap or pcapng files; '-' reads one from standard input "
                          "(e.g. tcpdump -w - | mptcp-fast analyze -) (default: the capture "
                          "of Linux kernel MPTCP shipped with the package)")
    ana.add_argument("--json", action="store_true",
                     help="print the report as JSON (several files: {\"captures\": [...]})")
    ana.add_argument("--dump-stream", metavar="DIR",
                     help="write each connection's rebuilt bytes per direction to DIR "
                          "(several files: DIR/<file name>/) (default: not written)")
    ana.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="analyse several files on N processes")
    ana.add_argument("--timing", action="store_true",
                     help="add per-subflow RTTs and retransmissions, and per-direction "
                          "delivery and reinjection delays (percentiles) to the report")
    ana.add_argument("--plot", metavar="DIR",
                     help="PNG figures per connection (sequence graph, throughput per subflow, "
                          "delivery): needs matplotlib, pip install 'mptcp_fast[plot]'; implies "
                          "--timing (default: no figures)")
    ana.add_argument("--parquet", metavar="DIR",
                     help="write per-packet, per-subflow and per-connection tables (Parquet, "
                          "needs pyarrow: pip install 'mptcp_fast[parquet]') (default: no tables)")
    ana.set_defaults(func=cmd_analyze)
