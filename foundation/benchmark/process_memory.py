"""Wall time and peak memory of a command's whole process tree (Linux /proc; psutil is not a dependency).

`run_measured` starts a command, samples every `interval` seconds the summed resident set size (RSS) of the
process and all its descendants (DDP ranks, DataLoader workers, a Spark JVM), and when it exits takes the
kernel's own peak of its largest single process (`wait4`'s `ru_maxrss`, exact: no sampling gap).

The tree sum counts a page shared by two processes (a library both map, a memory-mapped file) twice, so it
is an upper bound of what the tree needs; a spike shorter than `interval` can be missed by the sum but not by
the single-process peak.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
GIB = 1024**3


@dataclass
class MeasuredRun:
    """One finished command.

    Attributes:
        returncode: its exit status.
        seconds: wall time from start to exit.
        peak_tree_rss_bytes: the largest sampled sum of RSS over the process and its descendants.
        peak_tree_anon_bytes: the largest sampled sum of their anonymous RSS (RSS less file-backed pages).
        max_process_rss_bytes: the kernel's peak RSS of the largest single process of the tree (ru_maxrss).
        cpu_seconds: user + system CPU time of the tree (waited-for descendants included).
        samples: how many samples were taken.
    """

    returncode: int
    seconds: float
    peak_tree_rss_bytes: int
    peak_tree_anon_bytes: int
    max_process_rss_bytes: int
    cpu_seconds: float
    samples: int


def _parent_map() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # exited between listdir and open
            continue
        # The command name (field 2) may hold spaces and parentheses: the fields after the last ')' are fixed.
        fields = stat[stat.rfind(b")") + 2 :].split()
        parents[int(name)] = int(fields[1])
    return parents


def tree_pids(root: int) -> list[int]:
    """`root` and every descendant process alive now."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parent_map().items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_rss_bytes(root: int) -> tuple[int, int]:
    """Summed resident set size of `root` and its descendants, and the anonymous part of it (heap and stacks:
    what the kernel cannot drop; the rest is file pages such as memory-mapped Arrow files and libraries).
    A process that is gone counts 0."""
    total = anon = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                _, resident, shared = f.read().split()[:3]
        except (OSError, ValueError):
            continue
        total += int(resident) * PAGE_BYTES
        anon += (int(resident) - int(shared)) * PAGE_BYTES  # statm's "shared" = resident file + shmem pages
    return total, anon


def run_measured(command: Sequence[str], log_path: str | os.PathLike, cwd: str | os.PathLike | None = None,
                 env: dict[str, str] | None = None, interval: float = 0.2) -> MeasuredRun:
    """Run `command` (stdout and stderr to `log_path`) and measure its wall time and peak memory.

    Args:
        command: argv of the command.
        log_path: file that receives its output (the folder is created).
        cwd, env: as for subprocess.Popen.
        interval: seconds between two RSS samples of the process tree.
    Returns:
        The MeasuredRun (the command's failure is its returncode, not an exception).
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    peak, peak_anon, samples = 0, 0, 0
    with open(log_path, "wb") as log:
        began = time.perf_counter()
        proc = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        while True:
            # wait4 rather than Popen.wait: it returns the resource usage of this one child (and its waited
            # descendants), so each stage gets its own ru_maxrss instead of the max over every stage so far.
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss, anon = tree_rss_bytes(proc.pid)
            peak, peak_anon, samples = max(peak, rss), max(peak_anon, anon), samples + 1
            time.sleep(interval)
        seconds = time.perf_counter() - began
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    return MeasuredRun(returncode=proc.returncode, seconds=seconds, peak_tree_rss_bytes=peak,
                       peak_tree_anon_bytes=peak_anon,                        max_process_rss_bytes=int(usage.ru_maxrss) * 1024,  # KiB on Linux
                       cpu_seconds=usage.ru_utime + usage.ru_stime, samples=samples)
