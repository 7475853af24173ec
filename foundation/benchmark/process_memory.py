"""Wall time and peak memory of a command's whole process tree (Linux /proc; psutil is not a dependency).

`run_measured` starts a command and samples every `interval` seconds the summed resident set size (RSS) of
the process and all its descendants (DDP ranks, DataLoader workers, a Spark JVM), and the kernel's peak RSS of
each of them (`VmHWM` in /proc/<pid>/status: exact between samples, so a spike shorter than `interval` is
still caught for a process alive at the next sample).

The tree sum counts a page shared by two processes (a library both map, a memory-mapped file) twice, so it
is an upper bound of what the tree needs. Not `wait4`'s `ru_maxrss`: a child started by fork or vfork
inherits the parent's peak RSS from before its exec, so a large parent (a test runner) would inflate it.
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
        max_process_rss_bytes: the largest kernel peak RSS (VmHWM) of a single process of the tree, as sampled.
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


def _peak_rss_bytes(pid: int) -> int:
    """The kernel's peak RSS of one process since its exec (VmHWM); 0 when it is gone or reports none."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError):
        pass
    return 0


def tree_rss_bytes(root: int) -> tuple[int, int, int]:
    """Summed resident set size of `root` and its descendants, the anonymous part of it (heap and stacks:
    what the kernel cannot drop; the rest is file pages such as memory-mapped Arrow files and libraries), and
    the largest peak RSS of one of them. A process that is gone counts 0."""
    total = anon = largest = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                _, resident, shared = f.read().split()[:3]
        except (OSError, ValueError):
            continue
        total += int(resident) * PAGE_BYTES
        anon += (int(resident) - int(shared)) * PAGE_BYTES  # statm's "shared" = resident file + shmem pages
        largest = max(largest, _peak_rss_bytes(pid))
    return total, anon, largest


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
    peak, peak_anon, largest, samples = 0, 0, 0, 0
    with open(log_path, "wb") as log:
        began = time.perf_counter()
        proc = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        while True:
            # wait4 rather than Popen.wait: the CPU time of this one child (and its waited descendants).
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss, anon, one = tree_rss_bytes(proc.pid)
            peak, peak_anon, largest = max(peak, rss), max(peak_anon, anon), max(largest, one)
            samples += 1
            time.sleep(interval)
        seconds = time.perf_counter() - began
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    return MeasuredRun(returncode=proc.returncode, seconds=seconds, peak_tree_rss_bytes=peak,
                       peak_tree_anon_bytes=peak_anon, max_process_rss_bytes=largest,
                       cpu_seconds=usage.ru_utime + usage.ru_stime, samples=samples)
