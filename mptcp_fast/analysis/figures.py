"""The three figures of a connection's time series (``timeseries``), in two steps:
``figure_data`` reduces the series to what the figure's pixels can show (``envelope``: numpy
only, small and picklable), ``draw`` draws that: by default into pixels with numpy
(``raster``: no plotting library), or with matplotlib (``style="matplotlib"``).
``FigureWorker`` draws in a process of its own, forked before the capture is read, as each
figure's data comes, while its parent finishes the other outputs (with matplotlib it
imports matplotlib and makes each figure's empty axes while the file is read, and draws
each figure in a fork of itself).
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import sys
from collections import deque
from contextlib import contextmanager
from typing import Any

import numpy as np

from . import envelope, raster

__all__ = ["PlotError", "figure_data", "draw", "FigureWorker", "missing_library", "STYLES"]

DATA, RETRANSMISSION, REINJECTION = 0, 1, 2          # kinds of data segment (timeseries)
DPI = raster.DPI
STYLES = ("builtin", "matplotlib")         # how figures are drawn: raster, or matplotlib
# zlib's level for the PNGs: the same pixels as the default 6 in two thirds of the time,
# files about 4 % larger
PNG_COMPRESSION = 3
SEQUENCE_SIZE, THROUGHPUT_SIZE, DELIVERY_SIZE = (12, 4.5), (9, 4), (12, 4)
MARKERS = ((DATA, ".", 4, ""), (RETRANSMISSION, "x", 30, " retransmission"),
           (REINJECTION, "^", 30, " reinjection"))


class PlotError(RuntimeError):
    """Plots in matplotlib's style were asked for without matplotlib."""


def _pixels(size) -> tuple:
    """(columns, rows) of a figure of ``size`` inches: a grid no coarser than any of its
    axes' pixels."""
    return int(size[0] * DPI), int(size[1] * DPI)


FIGURES = ("sequence", "throughput", "delivery")


def figure_data(series, names=FIGURES) -> list:
    """The figures ``names`` (all three by default) of one connection's series, as plain
    data (no matplotlib): a list of {"file", "size", "layout", "axes": [{"title", "xlabel",
    "ylabel", "legend", "artists": [{"kind": "scatter" | "plot" | "step", "x", "y", ...}]}]}.

    Each reads part of the series only (``timeseries`` hands a connection's series over as
    each figure's part is made): "throughput" the subflows' samples' time and length,
    "sequence" their time, dsn, has_dsn and kind, "delivery" start_time, delivery,
    delay_points, delivery_delay_ms and gaps."""
    number = series["connection"]
    makers = {"sequence": _sequence_figure, "throughput": _throughput_figure,
              "delivery": _delivery_figure}
    return [makers[name](series, number) for name in names]


def figure_file(connection: int, name: str) -> str:
    """The file of figure ``name`` (one of ``FIGURES``) of a connection."""
    return f"connection{connection}-{name}.png"


def _sequence_figure(series, number) -> dict:
    """The data-level position against time per subflow, retransmissions and reinjections
    marked (one axes per direction)."""
    axes = []
    for direction, label in (("up", "client -> server"), ("down", "server -> client")):
        placed = [s["samples"][direction] for s in series["subflows"]]
        starts = [x["dsn"][x["has_dsn"]].min() for x in placed if x["has_dsn"].any()]
        base = min(starts) if starts else np.uint64(0)    # offsets: 64-bit DSNs are no floats
        artists = []
        for k, (s, x) in enumerate(zip(series["subflows"], placed)):
            for kind, marker, size, what in MARKERS:
                chosen = np.nonzero(x["has_dsn"] & (x["kind"] == kind))[0]
                if not len(chosen):
                    continue
                artists.append({"kind": "scatter", "x": x["time"][chosen],
                                "y": (x["dsn"][chosen] - base).astype(float),
                                "s": size, "marker": marker, "color": k,
                                "label": f"subflow {s['subflow']}{what}"})
        artists, unit = _in_byte_unit(_reduced(artists, SEQUENCE_SIZE))
        axes.append({"title": f"connection {number}, {label}", "xlabel": "time (s)",
                     "ylabel": f"data sequence ({unit} from the first byte seen)",
                     # the data-level position only grows with time: the upper left corner
                     # is empty (a fixed place: "best" tests every point against each place)
                     "legend": "upper left", "artists": artists})
    return {"file": figure_file(number, "sequence"), "size": SEQUENCE_SIZE,
            "layout": (1, 2), "axes": axes}


def _throughput_figure(series, number) -> dict:
    """Throughput per subflow and direction, in at most 50 bins over time."""
    artists = []
    for k, s in enumerate(series["subflows"]):
        for direction, style in (("up", "-"), ("down", "--")):
            x = s["samples"][direction]
            if not len(x["time"]):
                continue
            span = max(float(x["time"].max()), 1e-3)
            bins = min(50, max(2, len(x["time"]) // 4))
            edges = np.linspace(0, span, bins + 1)
            sums = _bin_sums(x["time"], x["length"], edges)
            width = edges[1] - edges[0]
            artists.append({"kind": "plot", "x": edges[:-1], "y": sums * 8 / width / 1e6,
                            "style": style, "color": k,
                            "label": f"subflow {s['subflow']} {direction}"})
    return {"file": figure_file(number, "throughput"), "size": THROUGHPUT_SIZE,
            "layout": (1, 1),
            "axes": [{"title": f"connection {number}: throughput per subflow",
                      "xlabel": "time (s)", "ylabel": "Mbit/s", "legend": "best",
                      "artists": artists}]}


def _bin_sums(time, length, edges) -> np.ndarray:
    """The sums of ``length`` by ``time`` in the bins between ``edges`` (equal bins from 0,
    the last one closed): what ``np.histogram(time, edges.size - 1, (0, edges[-1]),
    weights=length)`` gives. A subflow direction's times are in capture order: each bin's
    rows are then one run, bounded by where its edges fall (whole numbers of bytes: the
    sums are exact either way)."""
    if len(time) > 1 and not (time[1:] >= time[:-1]).all():     # out of order in the file
        sums, _ = np.histogram(time, bins=len(edges) - 1, range=(0, edges[-1]),
                               weights=length.astype(float))
        return sums
    bounds = np.searchsorted(time, edges, side="left")
    bounds[-1] = np.searchsorted(time, edges[-1], side="right")
    total = np.concatenate(([0], np.cumsum(length, dtype=np.int64)))
    return (total[bounds[1:]] - total[bounds[:-1]]).astype(float)


def _delivery_figure(series, number) -> dict:
    """Bytes delivered in order over time, and each data-level piece's wait for earlier
    bytes (head-of-line blocking)."""
    lines, dots = [], []
    for k, direction in enumerate(("up", "down")):
        arrival, delays = series["delay_points"][direction]
        if len(arrival):
            dots.append({"kind": "scatter", "x": arrival, "y": delays, "s": 4, "marker": None,
                         "color": k, "label": direction})
    for direction, style in (("up", "-"), ("down", "--")):
        times, total = _delivered(series["delivery"][direction])
        if len(times):
            lines.append({"kind": "step", "x": times - series["start_time"], "y": total,
                          "style": style, "color": None,
                          "label": f"{direction}: delivered in order"
                                   + _gaps_passed(series.get("gaps", {}).get(direction))})
    delay = series["delivery_delay_ms"]
    lines, unit = _in_byte_unit(_reduced(lines, DELIVERY_SIZE))
    in_order = {"title": f"connection {number}: delivered in order (delay p99 up "
                         f"{_ms(delay['up'])}, down {_ms(delay['down'])})",
                "xlabel": "time (s)", "ylabel": f"{unit} delivered in order",
                "legend": "upper left",          # bytes in order only grow, like the sequence
                "artists": lines}
    waits = {"title": "head-of-line blocking per data-level piece",
             "xlabel": "first arrival (s)", "ylabel": "wait for in-order delivery (ms)",
             "legend": "upper right", "artists": _reduced(dots, DELIVERY_SIZE)}
    return {"file": figure_file(number, "delivery"), "size": DELIVERY_SIZE,
            "layout": (1, 2), "axes": [in_order, waits]}


def _gaps_passed(gaps) -> str:
    """What the delivery went past: the bytes the capture never had (timeseries' gaps)."""
    if not gaps or not gaps["count"]:
        return ""
    return f", past {gaps['count']:,} gap{'s' if gaps['count'] != 1 else ''} " \
           f"({gaps['missing_bytes']:,} bytes missing)"


def _delivered(points) -> tuple:
    """(times, bytes delivered so far) as arrays, from the series' list of (time, bytes)
    pairs or a pair of arrays."""
    if isinstance(points, tuple):
        return np.asarray(points[0], float), np.asarray(points[1], float)
    if not points:
        return np.zeros(0), np.zeros(0)
    pairs = np.asarray(points, float)
    return pairs[:, 0], pairs[:, 1]


def _reduced(artists, size) -> list:
    """The artists of one axes, each series reduced to the points its pixels can show (the
    grid spans the limits of all of them, as the axes' own autoscaling does)."""
    if not artists:
        return artists
    xlim = envelope.limits([a["x"] for a in artists])
    ylim = envelope.limits([a["y"] for a in artists])
    grid = _pixels(size)
    out = []
    for a in artists:
        if a["kind"] == "scatter":
            keep = envelope.scatter_cells(a["x"], a["y"], xlim, ylim, grid)
        else:
            keep = envelope.line_envelope(a["x"], a["y"], xlim, grid[0])
        out.append({**a, "x": np.ascontiguousarray(a["x"][keep]),
                    "y": np.ascontiguousarray(a["y"][keep])})
    return out


BYTE_UNITS = ((1e9, "GB"), (1e6, "MB"), (1e3, "kB"))


def _in_byte_unit(artists) -> tuple:
    """(``artists`` with their y, in bytes, in the largest unit that leaves the largest
    value at least 10 of it (kB at least), the unit's name): ticks of a few digits."""
    largest = max((float(a["y"].max()) for a in artists if len(a["y"])), default=0.0)
    divisor, name = next(((d, n) for d, n in BYTE_UNITS if largest >= 10 * d),
                         BYTE_UNITS[-1])
    return [{**a, "y": a["y"] / divisor} for a in artists], name


def _ms(stats) -> str:
    return "-" if stats is None else f"{stats['p99']:.1f} ms"


NEEDS_MATPLOTLIB = "plots in matplotlib's style need matplotlib: pip install 'mptcp_fast[plot]'"


def missing_library(style: str = "builtin") -> str | None:
    """Why no figure can be drawn here in ``style`` (the library that draws them is not
    installed), or None. Imports nothing: a command asks before it reads a capture. The
    built-in style needs numpy alone."""
    import importlib.util
    if style != "matplotlib":
        return None
    return NEEDS_MATPLOTLIB if importlib.util.find_spec("matplotlib") is None else None


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError(NEEDS_MATPLOTLIB) from None
    return plt


def draw(figures, directory, style: str = "builtin") -> list:
    """Draw ``figure_data``'s figures as PNGs into ``directory``; return their paths.
    ``style``: "builtin" (``raster``: numpy only) or "matplotlib"."""
    if style == "builtin":
        return raster.draw(figures, directory)
    if style != "matplotlib":
        raise ValueError(f"style: {style!r} is none of {', '.join(STYLES)}")
    return _draw_with_matplotlib(figures, directory)


def _draw_with_matplotlib(figures, directory) -> list:
    plt = _pyplot()
    os.makedirs(directory, exist_ok=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    paths = []
    for figure in figures:
        shape = (tuple(figure["size"]), tuple(figure["layout"]))
        fig, grid = _EMPTY.pop(shape, None) or _new_figure(plt, *shape)
        for ax, spec in zip(grid.reshape(-1), figure["axes"]):
            _draw_axes(ax, spec, colors)
        fig.tight_layout()
        # tight_layout leaves a placeholder layout engine behind, and savefig lays out a
        # figure that has one in a whole extra draw: the layout is done, so none
        fig.set_layout_engine(None)
        path = os.path.join(directory, figure["file"])
        fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": PNG_COMPRESSION})
        plt.close(fig)
        paths.append(path)
    return paths


SHAPES = ((SEQUENCE_SIZE, (1, 2)), (THROUGHPUT_SIZE, (1, 1)), (DELIVERY_SIZE, (1, 2)))
TICKS = 12                  # tick objects made with an empty figure (more are made if needed)
_EMPTY: dict = {}           # (size, layout) -> (figure, axes): made before they are needed


def _new_figure(plt, size, layout):
    rows, columns = layout
    return plt.subplots(rows, columns, figsize=size, squeeze=False)


def _make_empty_figures() -> None:
    """Each figure's empty axes, with their tick objects, made ahead (by the worker, while
    the file is read): its forks draw into their copy at once. Drawn into, they give the
    PNG a figure made when it is drawn gives."""
    plt = _pyplot()
    for size, layout in SHAPES:
        fig, grid = _new_figure(plt, size, layout)
        for ax in grid.reshape(-1):
            ax.xaxis.get_major_ticks(TICKS)
            ax.yaxis.get_major_ticks(TICKS)
        _EMPTY[(size, layout)] = fig, grid


def _draw_axes(ax, spec, colors) -> None:
    for a in spec["artists"]:
        color = None if a["color"] is None else colors[a["color"] % len(colors)]
        if a["kind"] == "scatter":
            ax.scatter(a["x"], a["y"], s=a["s"], marker=a["marker"], color=color,
                       label=a["label"])
        elif a["kind"] == "step":
            ax.step(a["x"], a["y"], a["style"], where="post", label=a["label"],
                    **({} if color is None else {"color": color}))
        else:
            ax.plot(a["x"], a["y"], a["style"], color=color, label=a["label"])
    ax.set_title(spec["title"])
    ax.set_xlabel(spec["xlabel"])
    ax.set_ylabel(spec["ylabel"])
    if ax.has_data():
        ax.legend(fontsize="small", loc=spec["legend"])


class FigureWorker:
    """A process that draws figures (``draw``, in ``style``) while its parent works on:
    forked at once (with matplotlib it imports matplotlib while the parent reads the
    capture). Where no process can be forked, the figures are drawn in this process when
    they are submitted. ``written``: the paths of the figures drawn so far (as their answers
    were taken)."""

    def __init__(self, style: str = "builtin"):
        if style not in STYLES:
            raise ValueError(f"style: {style!r} is none of {', '.join(STYLES)}")
        self.style = style
        # the drawing process, the pipe to it, the thread that sends it jobs (None: none)
        self._process: Any = None
        self._connection: Any = None
        self._sender: Any = None
        self._outcomes: list = []            # ((ok, paths or why), figures) drawn here
        self._asked: deque = deque()         # the paths of each job sent, not yet answered
        self._receiving = False              # inside recv (an answer may be half read)
        self.written: list = []
        try:
            import multiprocessing
            context = multiprocessing.get_context("fork")
            for stream in (sys.stdout, sys.stderr):      # the child must not write them again
                stream.flush()
            parent, child = context.Pipe()
            self._process = context.Process(target=_serve, args=(child, parent, style),
                                            daemon=True)
            try:
                with _held(signal.SIGINT, signal.SIGTERM):   # until the worker has its own
                    self._process.start()
            except BaseException:             # Ctrl-C as it started: it ends as well
                if self._process.pid is not None:
                    self._process.terminate()
                    self._process.join()
                raise
            child.close()
            self._connection = parent
        except (ValueError, OSError, AssertionError):   # no fork, or a daemon's child
            self._process = self._connection = None

    def submit(self, figures, directory) -> None:
        """Ask for ``figures`` (``figure_data``) to be drawn into ``directory``. Returns at
        once: a thread hands them over (a pipe holds less than a figure's data, and the
        process takes the next job only when it has drawn the one before)."""
        self._hand_over(lambda: figures, [figure["file"] for figure in figures], directory)

    def submit_series(self, series, names, directory) -> None:
        """Ask for the figures ``names`` of a connection's ``series`` to be drawn into
        ``directory``: their data (``figure_data``) are made on the thread that hands them
        over, mostly in numpy without Python's lock, while the caller goes on (the parts of
        ``series`` those figures read must not change any more)."""
        files = [figure_file(series["connection"], name) for name in names]
        self._hand_over(lambda: figure_data(series, names), files, directory)

    def _hand_over(self, make, files: list, directory) -> None:
        """``make()``'s figures (``files``) drawn into ``directory``: here and now when
        there is no process, else by the process, handed over by a thread."""
        if self._connection is None:
            self._outcomes.append((_made_and_drawn(make, directory, self.style), len(files)))
            return
        if self._sender is None:
            import queue
            import threading
            self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
            self._sender = threading.Thread(target=self._send_jobs, daemon=True)
            self._sender.start()
        self._jobs.put((make, directory))
        self._asked.append([os.path.join(directory, name) for name in files])

    def _send_jobs(self) -> None:
        """Make each job's figures and send them; a job whose figures could not be made is
        sent as the exception, which the process answers in its turn."""
        try:
            while (job := self._jobs.get()) is not None:
                make, directory = job
                try:
                    figures = make()
                except Exception as exc:      # raised by results(), in the job's turn
                    figures = _picklable((False, exc))[1]
                self._connection.send((figures, directory))
        except OSError:                   # the process is gone: results() says so
            pass

    def results(self, progress=None) -> list:
        """Wait for every figure submitted; return their paths. ``progress(n)`` is called
        as the figures of each job are answered (n of them). Raises what drawing raised
        (PlotError when matplotlib is missing)."""
        outcomes = []
        for outcome, figures in self._outcomes:
            outcomes.append(outcome)
            self._taken(outcome, figures, progress)
        self._outcomes = []
        while self._asked:
            outcome = self._receive()
            outcomes.append(outcome)
            if outcome[0] is None:            # the process ended: no more answers
                break
            self._taken(outcome, len(self._asked.popleft()), progress)
        paths = []
        for ok, value in outcomes:
            if not ok:
                raise value
            paths += value
        return paths

    def _receive(self) -> tuple:
        """The next answer of the process: (True, paths), (False, exception), or (None, a
        PlotError) when the process is gone."""
        self._receiving = True
        try:
            outcome = self._connection.recv()
        except EOFError:
            self._asked.clear()
            outcome = (None, PlotError("the process drawing the figures ended"))
        self._receiving = False
        return outcome

    def _taken(self, outcome, figures: int, progress) -> None:
        if outcome[0]:
            self.written += outcome[1]
        if progress is not None:
            progress(figures)

    def close(self) -> None:
        """End the process (after the figures submitted are drawn)."""
        if self._connection is None:
            return
        if self._sender is not None:
            self._jobs.put(None)
            self._sender.join()
        try:
            self._connection.send(None)
        except OSError:
            pass
        self._connection.close()
        self._process.join()
        self._process = self._connection = self._sender = None

    def stop(self) -> list:
        """End the process now, with the figures it is drawing (Ctrl-C): the answers
        already sent are taken first, then the process ends its forks and itself (SIGTERM,
        ``_serve``), and the files of the figures not answered are removed (one cut off
        while written is no figure). Returns ``written``."""
        if self._connection is None:
            return self.written
        if not self._receiving:           # else an answer may be half read: take no more
            while self._asked and self._connection.poll():
                outcome = self._receive()
                if outcome[0] is None:
                    break
                self._taken(outcome, len(self._asked.popleft()), None)
        self._process.terminate()
        self._process.join()
        if self._sender is not None:      # it leaves at None, or at the closed pipe
            self._jobs.put(None)
            self._sender.join()
        self._connection.close()
        self._process = self._connection = self._sender = None
        _remove_files(path for job in self._asked for path in job)
        self._asked.clear()
        return self.written


def _remove_files(paths) -> None:
    """Remove the regular files among ``paths`` (a figure cut off; not a FIFO or a device
    someone put there)."""
    for path in paths:
        try:
            if os.path.isfile(path):
                os.remove(path)
        except OSError:
            pass


def _made_and_drawn(make, directory, style: str) -> tuple:
    """``make()``'s figures drawn: (True, paths), or (False, the exception raised)."""
    try:
        figures = make()
    except Exception as exc:              # raised by results()
        return False, exc
    return _draw_or_error(figures, directory, style)


def _draw_or_error(figures, directory, style: str) -> tuple:
    """(True, paths), or (False, the exception drawing raised)."""
    try:
        return True, draw(figures, directory, style)
    except Exception as exc:              # raised in the parent by results()
        return False, exc


def _serve(connection, parent_end, style: str) -> None:
    """The worker: draw what comes until None, answering each job, in order, when its
    figures are drawn. The built-in style draws here, figure after figure (a few
    milliseconds each). Matplotlib's is imported at once, the empty figures made, and each
    figure drawn in a fork of this process (matplotlib imported, the figure made: the fork
    starts drawing at once), so that the figures of a job and of the next jobs are drawn
    side by side."""
    parent_end.close()                    # inherited: once closed, the parent's end is an EOF
    drawing: dict = {}                    # a fork's answer pipe -> (job, figure, pid)
    _take_signals(drawing)
    draw_one: Any
    if style == "matplotlib":
        try:
            _make_empty_figures()
        except PlotError:
            pass                          # said when figures are asked for
        gc.freeze()                       # the forks' collections leave these pages alone
        draw_one = _draw_in_fork
    else:
        def draw_one(figure, directory):
            return _draw_or_error([figure], directory, style)
    from multiprocessing.connection import wait
    jobs: deque = deque()                 # [outcomes by figure, figures left], in order
    answered: list = []                   # forks that answered, waited for once it is told
    ready: Any                            # what wait() gives: our pipe or a fork's, told apart
    entry: list[Any]                      # by identity
    listening = True
    while listening or drawing:
        for ready in wait(([connection] if listening else []) + list(drawing)):
            if ready is connection:
                try:
                    job = connection.recv()
                except EOFError:          # the parent is gone
                    job = None
                if job is None:
                    listening = False
                    continue
                figures, directory = job
                if isinstance(figures, Exception):    # its figures could not be made
                    jobs.append([[(False, figures)], 0])
                    continue
                entry = [[None] * len(figures), len(figures)]
                jobs.append(entry)
                for k, figure in enumerate(figures):
                    with _held(signal.SIGTERM):   # a fork is in ``drawing`` before SIGTERM ends
                        answer = draw_one(figure, directory)
                        if isinstance(answer, tuple):        # drawn here: no fork
                            entry[0][k] = answer
                            entry[1] -= 1
                        else:
                            drawing[answer[0]] = (entry, k, answer[1])
            else:
                entry, k, pid = drawing.pop(ready)
                with ready:
                    try:
                        entry[0][k] = pickle.load(ready)
                    except EOFError:
                        entry[0][k] = (False, PlotError("the process drawing a figure ended "
                                                        "without it"))
                answered.append(pid)
                entry[1] -= 1
        while jobs and jobs[0][1] == 0:
            try:
                connection.send(_joined(jobs.popleft()[0]))
            except OSError:               # the parent is gone
                listening = False
        for pid in answered:              # their exits overlap the answer
            os.waitpid(pid, 0)
        answered.clear()


def _take_signals(drawing: dict) -> None:
    """The worker's signals. Ctrl-C on a terminal reaches every process of the foreground
    group: the worker and its forks leave it to the parent, which decides what ends.
    SIGTERM is the parent's word to stop now (``FigureWorker.stop``, or the end of a
    daemon's parent): the forks drawing (``drawing``'s pids) are killed and reaped first,
    so that none is left drawing for no one."""
    def end_now(signum, frame):
        for _, _, pid in list(drawing.values()):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:               # gone already
                pass
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, end_now)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # held at fork


@contextmanager
def _held(*signals):
    """``signals`` held back in the block (delivered at its end, if they came); a process
    forked in it starts with them held."""
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)


def _draw_in_fork(figure, directory):
    """Draw one figure with matplotlib in a fork of this process: [answer pipe, pid], or the
    outcome when no fork could be made (drawn here)."""
    try:
        read_end, write_end = os.pipe()
        pid = os.fork()
    except (AttributeError, OSError):
        return _draw_or_error([figure], directory, "matplotlib")
    if pid == 0:                                       # the copy: one figure, then exit
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the worker's: it has no forks
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            gc.disable()                               # it lives for one figure
            os.close(read_end)
            with os.fdopen(write_end, "wb") as out:
                pickle.dump(_picklable(_draw_or_error([figure], directory, "matplotlib")),
                            out)
        finally:
            os._exit(0)
    os.close(write_end)
    return [os.fdopen(read_end, "rb"), pid]


def _joined(outcomes) -> tuple:
    """One outcome of several: the first failure, or every path."""
    paths = []
    for ok, value in outcomes:
        if not ok:
            return ok, value
        paths += value
    return True, paths


def _picklable(outcome) -> tuple:
    """``outcome``, its exception replaced by a PlotError saying it when it cannot be
    pickled."""
    try:
        pickle.dumps(outcome)
        return outcome
    except Exception:
        return False, PlotError(f"drawing failed: {outcome[1]!r}")
