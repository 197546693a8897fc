"""``mptcp-fast analyze``: the MPTCP connections of pcap/pcapng captures (the report of
``mptcp_fast.analysis``), with timing, plots and Parquet tables on request."""

from __future__ import annotations

import io
import json
import os
import signal
import sys
from typing import Any, NamedTuple

from . import HelpFormatter, count_bar, size_bar

# A small capture of Linux kernel MPTCP, shipped as package data (mptcp_fast/data/).
SHIPPED_CAPTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                               "kernel-mptcp.pcap")


def _print_report(report: dict, out) -> None:
    gaps_printed = 10                  # per stream (--json lists more)

    def seen(value) -> str:
        """A value, or "not seen" when the capture did not show it (null in the JSON)."""
        return "not seen" if value is None else str(value)

    def key_and_token(key, token) -> str:
        return "not seen" if key is None and token is None else f"{seen(key)} (token {seen(token)})"

    print(f"{report['packets']} TCP packets, {report['mptcp_packets']} with MPTCP options, "
          f"{len(report['connections'])} MPTCP connection(s)", file=out)
    for c in report["connections"]:
        print(f"\nconnection {c['connection']}: MPTCP v{c['version']}, checksums "
              f"{'on' if c['checksums'] else 'off'}", file=out)
        print(f"  client key {key_and_token(c['client_key'], c['client_token'])}, server key "
              f"{key_and_token(c['server_key'], c['server_token'])}", file=out)
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
                  f"{seen(s['client_address_id'])}/{seen(s['server_address_id'])}{backup}"
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
            if st["gap_count"]:
                line += (f"; {st['missing_bytes']:,} bytes MISSING in {st['gap_count']:,} "
                         f"gap{'s' if st['gap_count'] != 1 else ''} (never in the capture)")
            if st["not_captured_bytes"]:
                line += (f"; payload of {st['not_captured_bytes']:,} bytes not captured "
                         "(snap length)")
            elif st["sha256"] is not None:
                line += f"; rebuilt {st['bytes']:,} bytes"
                if st["gap_count"]:
                    pieces = st["piece_count"]
                    line += (f" in {pieces:,} piece{'s' if pieces != 1 else ''}, the gaps left "
                             "out (sha256 of the pieces joined; each piece's in the JSON)")
                line += f", sha256 {st['sha256']}"
            line += (f"; out of order {st['out_of_order_bytes']:,}, duplicate "
                     f"{st['duplicate_bytes']:,}, reinjected {st['reinjected_bytes']:,}")
            if st["conflict_bytes"]:
                line += f", CONFLICTING {st['conflict_bytes']:,}"
            if st["outside_window_bytes"]:
                line += f", outside any window {st['outside_window_bytes']:,} (2**63 or more ahead)"
            if st["late_bytes"]:
                line += f", LATE {st['late_bytes']:,} (came after their gap was passed)"
            if st["zero_window_probes"]:
                line += f", zero-window probes {st['zero_window_probes']:,} (set aside)"
            print(line, file=out)
            for gap in st["gaps"][:gaps_printed]:
                where = "" if gap["stream_offset"] is None else \
                    f" ({gap['stream_offset']:,} bytes after the stream's first byte)"
                print(f"      gap at DSN {gap['dsn']}{where}: {gap['bytes']:,} bytes", file=out)
            if st["gap_count"] > gaps_printed:
                print(f"      ... and {st['gap_count'] - gaps_printed:,} more gaps (--json "
                      f"lists the first {len(st['gaps']):,})", file=out)
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


def _pair(stats) -> str:
    return "-" if stats is None else f"{stats['p50']:.2f}/{stats['p90']:.2f}"


def _triple(stats) -> str:
    return "-" if stats is None else f"{stats['p50']:.2f}/{stats['p90']:.2f}/{stats['p99']:.2f}"


def cmd_analyze(args, out=None) -> int:
    out = out or sys.stdout
    names = list(args.capture) or [SHIPPED_CAPTURE]
    if names.count("-") > 1:
        print("mptcp-fast analyze: standard input ('-') can be read once", file=sys.stderr)
        return 2
    several = len(names) > 1
    outputs = [FileOutputs.of(args, name, several) for name in names]
    made: list = []                       # the directories made for the outputs
    unusable = _unusable_outputs(args, outputs, made)     # before any capture is read
    if unusable is not None:
        print(f"mptcp-fast analyze: {unusable}", file=sys.stderr)
        return 2
    spooled, interrupted = _spool_stdin() if "-" in names else ("", False)
    files = [spooled if name == "-" else name for name in names]
    run = _Run(args, out, len(names), stdin_interrupted=interrupted)
    try:
        if args.jobs > 1 and several:
            _analyze_on_processes(run, names, files, outputs, args.jobs)
        else:
            for name, path, wanted in zip(names, files, outputs):
                run.analyze(name, path, wanted)
    except KeyboardInterrupt as exc:          # Ctrl-C: what was done so far, and 130
        _ending_on(exc)
        run.progress.close()
        # on a terminal, from the line's start: a bar cut off as it was cleared (a second
        # Ctrl-C) may have left the cursor after its blanks
        start = "\r" if sys.stderr.isatty() else ""
        print(f"{start}mptcp-fast analyze: interrupted {run.progress.where()}", file=sys.stderr)
        return 130
    finally:
        if spooled:
            os.unlink(spooled)
        if several:
            _remove_empty(made)
    run.finish()
    return run.status


# -- what is written besides the report, and where

class FileOutputs(NamedTuple):
    """Where one file's outputs go (None: not asked for): figures, Parquet tables, dumped
    streams. With several files each has a directory of its own, named after the file
    (standard input: "stdin"). ``plot_style``: how the figures are drawn."""
    plot: str | None
    tables: str | None
    streams: str | None
    plot_style: str = "builtin"

    @classmethod
    def of(cls, args, name: str, several: bool) -> "FileOutputs":
        mine = (os.path.basename(name) or name) if name != "-" else "stdin"
        def where(base: str | None) -> str | None:
            return None if base is None else os.path.join(base, mine) if several else base
        return cls(where(args.plot), where(args.parquet), where(args.dump_stream),
                   plot_style=args.plot_style)

    def asked(self) -> list:
        """[(what, directory)] of the outputs asked for."""
        return [(what, directory) for what, directory in
                zip(OUTPUT_NAMES, (self.plot, self.tables, self.streams))
                if directory is not None]


OUTPUT_NAMES = ("figures", "tables", "streams")
OPTIONS = {"figures": "--plot", "tables": "--parquet", "streams": "--dump-stream"}


def _unusable_outputs(args, outputs, made: list) -> str | None:
    """Why the outputs asked for cannot be made (one line), or None: a library they need is
    missing, or a directory cannot be made or written into. Checked before any capture is
    read, so that nobody waits for a report whose outputs then fail; the directories are
    made here (those that were not there are added to ``made``)."""
    import importlib.util
    from ..analysis import figures
    if args.plot is not None and (missing := figures.missing_library(args.plot_style)):
        return f"--plot: {missing}"
    if args.parquet is not None and importlib.util.find_spec("pyarrow") is None:
        return "--parquet needs pyarrow: pip install 'mptcp_fast[parquet]'"
    for wanted in outputs:
        for what, directory in wanted.asked():
            if not os.path.isdir(directory):
                made.append(directory)
            why = _unwritable(directory)
            if why is not None:
                return f"{OPTIONS[what]} {directory}: {why}"
    return None


def _unwritable(directory: str) -> str | None:
    """Why no file can be written into ``directory`` (made when missing), or None."""
    import tempfile
    if os.path.exists(directory) and not os.path.isdir(directory):
        return "not a directory"
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        return f"cannot create the directory: {exc.strerror}"
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        return f"cannot write there: {exc.strerror}"
    return None


def _remove_empty(made: list) -> None:
    """The directories made for the files' own outputs (several files) and left empty:
    nothing was written for that file (not a capture, or not reached before a Ctrl-C), so
    its directory goes."""
    for directory in made:
        try:
            if not os.listdir(directory):
                os.rmdir(directory)
        except OSError:
            pass


def _output_lines(result: dict, wanted: FileOutputs) -> list:
    """One line per output asked for: what was written where (e.g. "figures: 7 PNG files in
    out/plots"), or why nothing was."""
    report = result["report"]
    if "connections" not in report:
        return []                         # nothing read: the error line says it
    kinds = {"figures": "PNG ", "tables": "Parquet ", "streams": ""}
    damaged = "error" in report
    partial = ", of the packets before the damage" if damaged else ""
    lines = []
    for what, directory in wanted.asked():
        paths = result[what]
        if not paths and not report["connections"] and what != "tables":
            seen = "before the damage" if damaged else "in the capture"
            lines.append(f"{what}: none, no MPTCP connection {seen}")
            continue
        count = f"{len(paths)} {kinds[what]}file{'' if len(paths) == 1 else 's'}"
        lines.append(f"{what}: {count} in {directory}{partial}")
    return lines


def _nothing_written(wanted: FileOutputs) -> str:
    """"; no figures, tables or streams written" for the outputs asked for ("" for none)."""
    names = [what for what, _ in wanted.asked()]
    if not names:
        return ""
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return f"; no {listed} written"


# -- the files, one after the other or on processes

class _Run:
    """The files' reports as they are done: the error line of a damaged file, the text
    report printed at once (the JSON document waits for every file), the lines saying what
    was written where, and the exit status."""

    def __init__(self, args, out, files: int, stdin_interrupted: bool):
        self.out, self.json = out, args.json
        self.timing = bool(args.timing or args.plot)
        self.several = files > 1
        self.stdin_interrupted = stdin_interrupted
        self.reports: list = []
        self.status = 0
        self.progress = _Progress(files, shown=not args.json and sys.stderr.isatty())
        self.notes = sys.stderr if args.json else out     # where the outputs' lines go

    def analyze(self, name: str, path: str, wanted: FileOutputs) -> None:
        """One file in this process: its report printed as soon as it is made, before its
        figures and tables are done."""
        self.progress.start(name, path)
        result = _analyze_file(path, wanted, self.timing, self.progress,
                               on_report=lambda report: self.report(name, report, wanted))
        self.file_done(name, result, wanted)

    def report(self, name: str, report: dict, wanted: FileOutputs) -> None:
        report["capture"] = name
        error = report.pop("error", None)
        if name == "-" and self.stdin_interrupted:
            report["interrupted"] = True
            if error is not None and ("truncated" in error or "cut" in error):
                error = None              # Ctrl-C ended the input: its last record is cut
        if error is not None:
            nothing = "" if "connections" in report else _nothing_written(wanted)
            print(f"mptcp-fast analyze: {name}: {error}{nothing}", file=sys.stderr)
            report["error"] = error
            self.status = 2
        self.reports.append(report)
        if not self.json and "connections" in report:
            text = io.StringIO()
            print(f"{name}:" + (" (interrupted)" if report.get("interrupted") else ""),
                  file=text)
            _print_report(report, text)
            # Marked before any of it can be seen: a Ctrl-C at the sight of its last line
            # (which a large report's full buffer could send out inside the writing) must
            # say "after the report".
            self.progress.reported = True
            self.out.write(text.getvalue())
            self.out.flush()              # seen now, also in a pipe: the outputs come later

    def file_done(self, name: str, result: dict, wanted: FileOutputs,
                  reported: bool = True) -> None:
        if not reported:
            self.report(name, result["report"], wanted)
        for failure in result["failures"]:
            print(f"mptcp-fast analyze: {name}: {failure}", file=sys.stderr)
            self.status = 2
        for line in _output_lines(result, wanted):
            print(line, file=self.notes)
        self.progress.file_done(name)

    def finish(self) -> None:
        if self.json:
            json.dump({"captures": self.reports} if self.several else self.reports[0],
                      self.out, indent=2)
            print(file=self.out)


def _analyze_on_processes(run: _Run, names, files, outputs, jobs: int) -> None:
    """The files on ``jobs`` processes; each report is taken, in order, as it is done. On
    Ctrl-C the workers are ended (each ends its own figures first: ``_pool_worker``)."""
    from concurrent.futures import ProcessPoolExecutor
    pool = ProcessPoolExecutor(jobs, initializer=_pool_worker)
    run.progress.on_processes()
    try:
        futures = [pool.submit(_pool_job, path, wanted, run.timing)
                   for path, wanted in zip(files, outputs)]
        for name, wanted, future in zip(names, outputs, futures):
            run.file_done(name, future.result(), wanted, reported=False)
    except KeyboardInterrupt as exc:
        _ending_on(exc)
        _end_pool(pool)
        raise
    pool.shutdown()


def _end_pool(pool) -> None:
    """End the pool's processes now (SIGTERM, each ending its job: ``_pool_worker``) and
    wait for them, so that nothing of the command runs on after it."""
    # the pool has no public way to end its processes and wait for them (Python 3.14's
    # terminate_workers does not wait): its own list of them
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join()


_IN_JOB = False                          # a pool worker: analysing a file now
_ENDED = False                           # ... and its job has taken the interrupt
_AGAIN_EVERY = 0.2                       # seconds: the interrupt raised again until taken


def _pool_worker() -> None:
    """A pool worker's signals. Ctrl-C on a terminal reaches every process of the
    foreground group: the workers leave it to the parent, which ends them with SIGTERM. A
    worker analysing a file ends it as Ctrl-C ends one in a single process (its figure
    worker stopped, a table cut off removed: ``_analyze_file``), then itself; a second
    SIGTERM (the pool ends its other workers once one has left) must not cut that short.

    Python drops an exception raised while a ``__del__`` runs ("Exception ignored in"), so
    the interrupt may never reach the job: it is raised again every ``_AGAIN_EVERY``
    seconds (SIGALRM) until the job has taken it (``_interrupt_taken``)."""
    def end(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not _IN_JOB:
            os._exit(130)
        signal.signal(signal.SIGALRM, again)
        signal.setitimer(signal.ITIMER_REAL, _AGAIN_EVERY, _AGAIN_EVERY)
        raise KeyboardInterrupt

    def again(signum, frame):
        if not _IN_JOB:
            os._exit(130)
        if not _ENDED:
            raise KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, end)


def _interrupt_taken() -> None:
    """The job is ending on its interrupt: no more of them (``_pool_worker``)."""
    global _ENDED
    _ENDED = True
    signal.setitimer(signal.ITIMER_REAL, 0)


def _pool_job(path: str, wanted: FileOutputs, timing: bool) -> dict:
    global _IN_JOB
    _IN_JOB = True
    try:
        progress = _Progress(1, shown=False)
        progress.start(path, path)
        return _analyze_file(path, wanted, timing, progress)
    except KeyboardInterrupt:            # SIGTERM from the parent: the job was ended
        os._exit(130)
    finally:
        _IN_JOB = False


# -- one file

def _analyze_file(path: str, wanted: FileOutputs, timing: bool, progress, on_report=None) -> dict:
    """One capture, read once (twice when flows must be placed without handshakes): its
    report with ``"timing"`` when asked, its figures and tables written from the same model,
    its streams dumped while it is read. ``on_report(report)`` is called once the report is
    made, before the figures and tables are done. Returns {"report", "figures", "tables",
    "streams": the paths written (None: not asked for, or failed), "failures": [lines]}.

    A damaged file's outputs are those of what came before the damage; a file with nothing
    read (not a capture) has none."""
    from ..analysis.model import small_pages
    with small_pages():                   # the table and the series: big arrays, used once
        # the figures are drawn by a process forked now (in matplotlib's style it imports
        # matplotlib while the file is read), while this one finishes the other outputs
        worker = None
        if wanted.plot is not None:
            from ..analysis.figures import FigureWorker
            worker = FigureWorker(wanted.plot_style)
        try:
            result = _outputs_of_file(path, wanted, timing, progress, worker, on_report)
        except BaseException as exc:      # Ctrl-C: the figures being drawn end with it
            if _IN_JOB:
                _interrupt_taken()
            _ending_on(exc)
            if worker is not None:
                worker.stop()
            raise
        if worker is not None:
            worker.close()
    return result


def _outputs_of_file(path, wanted: FileOutputs, timing, progress, worker, on_report) -> dict:
    from ..analysis.model import model_of_file
    model = model_of_file(path, wanted.streams, progress.read_to,
                          packets=timing or wanted.tables is not None)
    progress.read_done()
    report = model.report
    failures: list[str] = []
    result: dict[str, Any] = {"report": report, "figures": None, "tables": None,
                              "streams": None, "failures": failures}
    if "connections" not in report:       # nothing read (not a capture): nothing written
        if on_report is not None:
            on_report(report)
        return result
    # the tables are made and written on a thread while the time series and the figures
    # are made from the same model
    writer = _TableWriter(model, wanted.tables) if wanted.tables is not None else None
    progress.outputs(worker, wanted.plot, writer, timing)
    try:
        if timing:
            _add_timing(model, worker, wanted.plot)
            progress.series_done()
        if on_report is not None:
            on_report(report)
        if worker is not None:
            result["figures"] = _figures_drawn(worker, len(report["connections"]), progress,
                                               failures)
        if writer is not None:
            try:
                result["tables"] = writer.result()
            except (ImportError, OSError) as exc:
                failures.append(f"tables: {exc}")
                result["tables"] = writer.written
    except BaseException as exc:          # Ctrl-C: no table is left cut off
        _ending_on(exc)
        if writer is not None:
            writer.stop()
        raise
    if wanted.streams is not None:
        result["streams"] = _dumped_streams(report, wanted.streams)
    return result


def _ending_on(exc: BaseException) -> None:
    """After a Ctrl-C (``exc``), a second one (people press it twice) must not cut short
    what ends the work nor the line that says where it stood: it is ignored from now on."""
    import threading
    if isinstance(exc, KeyboardInterrupt) and \
            threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _add_timing(model, worker, plot_dir) -> None:
    """Each connection's ``"timing"`` in the report, from its time series; each figure is
    handed to the worker as soon as its part of the series is made: its data are made on the
    worker's thread and it is drawn in the worker's process while the rest of the series
    (and the next connection's) are made."""
    from ..analysis import timeseries
    ready = None
    if worker is not None:
        def ready(name, partial):
            worker.submit_series(partial, (name,), plot_dir)
    series = timeseries.each_model_series(model, delivery_pairs=False, ready=ready)
    for conn, one in zip(model.report["connections"], series):
        conn["timing"] = timeseries.summary(one)


def _figures_drawn(worker, connections: int, progress, failures: list) -> list:
    """Wait for the figures (a bar on a terminal); the paths of those drawn (a failure is
    added to ``failures``)."""
    from ..analysis import figures
    progress.drawing(len(figures.FIGURES) * connections)
    try:
        return worker.results(progress.figures_drawn)
    except (figures.PlotError, OSError) as exc:
        failures.append(f"figures: {exc}")
        return worker.written
    finally:
        progress.close()


def _dumped_streams(report: dict, directory: str) -> list:
    """The stream files the analyzer wrote (connectionN-up.bin, connectionN-down.bin)."""
    paths = [os.path.join(directory, f"connection{c['connection']}-{name}.bin")
             for c in report["connections"] for name in ("up", "down")]
    return [path for path in paths if os.path.exists(path)]


class _TableWriter:
    """The Parquet tables of a model, made and written on a thread (pyarrow is imported
    there, and Arrow works without Python's lock). ``written``: the tables done so far.
    ``stop()`` (Ctrl-C) lets no further table begin and removes the one being written: the
    thread cannot be stopped, and a table cut off is no table (it dies with the process)."""

    TABLES = 3                            # packets, subflows, connections

    def __init__(self, model, directory: str):
        import threading
        self.directory = directory
        self.written: list = []
        self._stopped = False
        self._current: str | None = None  # the table being written
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._write, args=(model,), daemon=True)
        self._thread.start()

    def _write(self, model) -> None:
        from ..analysis import tables
        try:
            for name, table, options in tables.tables_to_write(model):
                if self._stopped:
                    return
                self._current = os.path.join(self.directory, f"{name}.parquet")
                tables.write_arrow([(name, table, options)], self.directory)
                self.written.append(self._current)
                self._current = None
        except BaseException as exc:      # handed to the caller by result()
            self._failure = exc

    def result(self) -> list:
        """Wait for the tables; their paths. Raises what writing them raised."""
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        return self.written

    def stop(self) -> None:
        self._stopped = True
        current = self._current
        if current is not None and current not in self.written and os.path.isfile(current):
            os.remove(current)


class _Progress:
    """Where the analysis stands, for a Ctrl-C (``where``), and its bars on a terminal
    (tqdm on stderr, as the demo's; none when not shown): the bytes read of a big file, the
    figures drawn."""

    BIG = 16 << 20                        # a smaller file is read before a bar would show

    def __init__(self, files: int, shown: bool):
        self.files, self.shown = files, shown
        self.done: list = []              # the names of the files finished
        self.bar: Any = None
        self.stage: str | None = None     # "reading", "series", "outputs" or "processes"
        self.name: str | None = None
        self.reported = False
        self.figures: list[Any] | None = None   # [worker, figures in all, directory]
        self.tables: Any = None
        self.size: int | None = None

    def start(self, name: str, path: str) -> None:
        self.name, self.stage, self.reported = name, "reading", False
        self.offset, self.reads = 0, 1
        self.size = os.path.getsize(path) if os.path.isfile(path) else None
        self.figures = self.tables = None
        if self.shown and self.size is not None and self.size >= self.BIG:
            self.bar = size_bar(self.size, "analyze")

    def read_to(self, offset: int) -> None:
        """The model's progress: the byte offset a read reached."""
        if offset < self.offset:          # the second read: flows without handshakes
            self.reads += 1
            if self.bar is not None:
                self.bar.reset()
        self.offset = offset
        if self.bar is not None:
            self.bar.update(offset - self.bar.n)

    def read_done(self) -> None:
        self.close()
        self.stage = "outputs"

    def outputs(self, worker, plot_dir, writer, timing: bool) -> None:
        """What is made of the model: the time series (``timing``), figures drawn by
        ``worker`` into ``plot_dir``, tables written by ``writer``."""
        self.figures = None if worker is None else [worker, None, plot_dir]
        self.tables = writer
        self.stage = "series" if timing else "outputs"

    def series_done(self) -> None:
        self.stage = "outputs"

    def drawing(self, total: int) -> None:
        """The figures are waited for (``total`` of them)."""
        assert self.figures is not None   # outputs() came first
        self.figures[1] = total
        if self.shown:
            self.bar = count_bar(total, "figures", "figure")

    def figures_drawn(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def file_done(self, name: str) -> None:
        self.close()
        self.done.append(name)
        self.stage = "processes" if self.stage == "processes" else None

    def on_processes(self) -> None:
        self.stage = "processes"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def where(self) -> str:
        """Where the analysis stood: the file and how far it got, the files done before."""
        if self.stage == "processes":
            done = f" ({', '.join(self.done)})" if self.done else ""
            return f"with {len(self.done)} of {self.files} files analysed{done}"
        if self.stage is None:
            text = "between files" if self.done else "before the first file was read"
        elif self.stage == "reading":
            text = self._reading()
        else:
            text = self._after_reading()
        return text + (f" (done: {', '.join(self.done)})" if self.done else "")

    def _reading(self) -> str:
        which = "reading" if self.reads == 1 else \
            "reading a second time (to place flows without handshakes)"
        if not self.size:
            return f"while {which} {self.name} after {self.offset:,} bytes"
        return f"while {which} {self.name} at {100 * self.offset // self.size} %"

    def _after_reading(self) -> str:
        text = f"after the report of {self.name}" if self.reported else \
            f"after reading {self.name}"
        if self.stage == "series":
            return text + ", while making its time series"
        busy: list[tuple] = []            # (doing what, written, of how many, where)
        if self.figures is not None and self.figures[1] is not None:
            worker, total, directory = self.figures
            if len(worker.written) < total:
                busy.append(("drawing figures", len(worker.written), total, directory))
        if self.tables is not None and len(self.tables.written) < _TableWriter.TABLES:
            busy.append(("writing tables", len(self.tables.written), _TableWriter.TABLES,
                         self.tables.directory))
        if len(busy) == 1:
            doing, written, total, directory = busy[0]
            text += f", while {doing}: {written} of {total} written to {directory}"
        elif busy:
            text += ", while " + " and ".join(f"{doing} ({written} of {total} written to "
                                              f"{directory})"
                                              for doing, written, total, directory in busy)
        return text


def add_parser(sub) -> None:
    """The ``analyze`` subcommand."""
    ana = sub.add_parser("analyze", formatter_class=HelpFormatter,
                         help="analyse the MPTCP connections of a capture",
                         description="Connections, subflows, HMAC verdicts, DSS checksums and the "
                                     "rebuilt data stream of each direction. With no CAPTURE, a "
                                     "small capture of Linux kernel MPTCP shipped with the "
                                     "package. Exit status 2 when a file is cut, corrupt or "
                                     "not a capture (its report, figures, tables and streams "
                                     "cover what came before the damage; the other files are "
                                     "still done), 130 on Ctrl-C.")
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
                          "delivery); implies --timing (default: no figures)")
    ana.add_argument("--plot-style", choices=("builtin", "matplotlib"), default="builtin",
                     help="how --plot draws: 'builtin' (numpy only, quick) or 'matplotlib' "
                          "(antialiased; needs matplotlib: pip install 'mptcp_fast[plot]')")
    ana.add_argument("--parquet", metavar="DIR",
                     help="write per-packet, per-subflow and per-connection tables (Parquet, "
                          "needs pyarrow: pip install 'mptcp_fast[parquet]') (default: no tables)")
    ana.set_defaults(func=cmd_analyze)
