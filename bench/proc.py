"""CPU and memory of a process tree, read from /proc (Linux).

The server is `raysfu serve` plus everything it started: with a local Ray, `ray.init()` in the serve process
starts gcs_server, raylet, the dashboard and its agents as its children, and raylet starts the Ray workers
(where the actors, the gateway and the media workers run) as its children. So the tree under the serve
process's pid holds every server process. A process that exits during a measurement keeps the CPU it was
last seen with (its time moves to its parent's cutime only once reaped, which we do not count, to avoid
counting it twice).
"""

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    comm: str
    utime: int  # clock ticks
    stime: int


def parse_stat(text: str) -> ProcStat:
    """One /proc/<pid>/stat line (the comm may contain spaces and parentheses)."""
    open_, close = text.index("("), text.rindex(")")
    pid = int(text[:open_].strip())
    comm = text[open_ + 1 : close]
    fields = text[close + 2 :].split()
    # fields[0] is the state (field 3); ppid is field 4, utime 14, stime 15 (1-based, man proc)
    return ProcStat(pid=pid, ppid=int(fields[1]), comm=comm, utime=int(fields[11]), stime=int(fields[12]))


def read_stats(proc: Path = Path("/proc")) -> dict[int, ProcStat]:
    """Every readable process's stat."""
    stats: dict[int, ProcStat] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stats[int(entry.name)] = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return stats


def descendants(stats: Mapping[int, ProcStat], root: int) -> set[int]:
    """root and every process below it."""
    children: dict[int, list[int]] = {}
    for s in stats.values():
        children.setdefault(s.ppid, []).append(s.pid)
    tree: set[int] = set()
    todo = [root] if root in stats else []
    while todo:
        pid = todo.pop()
        if pid in tree:
            continue
        tree.add(pid)
        todo.extend(children.get(pid, ()))
    return tree


class ProcessCpu:
    """Accumulates user+sys CPU of a set of processes (`select` picks them from all processes' stats) between
    `start()` and `sample()` calls.

    Per pid it keeps the first and the last ticks seen; processes that appear later start from 0 (their whole
    life is inside the window). Call `sample()` every second or so to catch short-lived processes."""

    def __init__(
        self, select: Callable[[Mapping[int, ProcStat]], Iterable[int]], proc: Path = Path("/proc")
    ) -> None:
        self.select = select
        self.proc = proc
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.names: dict[int, str] = {}

    def start(self) -> None:
        self.first.clear()
        self.last.clear()
        self.observe(read_stats(self.proc), initial=True)

    def sample(self) -> None:
        self.observe(read_stats(self.proc), initial=False)

    def observe(self, stats: Mapping[int, ProcStat], initial: bool) -> None:
        for pid in self.select(stats):
            s = stats.get(pid)
            if s is None:
                continue
            ticks = s.utime + s.stime
            if pid not in self.first:
                self.first[pid] = ticks if initial else 0
            self.last[pid] = ticks
            self.names[pid] = s.comm

    def seconds(self) -> float:
        return sum(self.last[p] - self.first[p] for p in self.last) / CLOCK_TICKS

    def by_name(self) -> dict[str, float]:
        """CPU seconds per process name (comm), for the report."""
        out: dict[str, float] = {}
        for pid, ticks in self.last.items():
            name = self.names.get(pid, "?")
            out[name] = out.get(name, 0.0) + (ticks - self.first[pid]) / CLOCK_TICKS
        return {k: round(v, 3) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


class TreeCpu(ProcessCpu):
    """The CPU of the process tree under `root`."""

    def __init__(self, root: int, proc: Path = Path("/proc")) -> None:
        super().__init__(lambda stats: descendants(stats, root), proc)


def label_from_cmdline(argv: list[str], comm: str) -> str:
    """A name a reader recognises for a server process: a Ray worker by its actor class (Ray sets its title
    to `ray::Class.method`), a Python process by its script or module (Ray's dashboard, log monitor and
    agents are all `python`), anything else by its comm."""
    if argv and argv[0].startswith("ray::"):
        return argv[0].split()[0].split(".")[0]
    if argv and os.path.basename(argv[0]).startswith("python"):
        for i, arg in enumerate(argv[1:], start=1):
            if arg == "-m" and i + 1 < len(argv):
                return argv[i + 1]
            if arg.endswith(".py"):
                return os.path.basename(arg)
    return comm


def process_label(pid: int, comm: str, proc: Path = Path("/proc")) -> str:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return comm
    return label_from_cmdline([a for a in raw.decode(errors="replace").split("\0") if a], comm)


def parse_pss_kb(smaps_rollup: str) -> int:
    """The Pss: line of /proc/<pid>/smaps_rollup, in kB (0 when absent)."""
    for line in smaps_rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def pss_mb(pids: Iterable[int], proc: Path = Path("/proc")) -> float:
    """Sum of the PSS of these processes in MiB; unreadable ones count 0."""
    total_kb = 0
    for pid in pids:
        try:
            total_kb += parse_pss_kb((proc / str(pid) / "smaps_rollup").read_text())
        except OSError:
            continue
    return total_kb / 1024.0


def tree_pss_mb(root: int, proc: Path = Path("/proc")) -> float:
    return pss_mb(descendants(read_stats(proc), root), proc)


class TreePss:
    """PSS of the process tree under `root`, in MiB per process label (`process_label`), largest first.

    A Ray worker's title is its actor class while idle but the name of the call it runs while busy (raysfu
    names its calls after their targets, `room.join`): each pid keeps the class it was last seen idle
    with."""

    def __init__(self, root: int, proc: Path = Path("/proc")) -> None:
        self.root, self.proc = root, proc
        self.labels: dict[int, str] = {}

    def by_label(self) -> dict[str, float]:
        stats = read_stats(self.proc)
        out: dict[str, float] = {}
        for pid in descendants(stats, self.root):
            label = process_label(pid, stats[pid].comm, self.proc)
            if label.startswith("ray::") and not label[5:6].isupper():  # `ray::participant.signal`
                label = self.labels.get(pid, "ray::(a named call)")
            else:
                self.labels[pid] = label
            out[label] = out.get(label, 0.0) + pss_mb([pid], self.proc)
        return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}
