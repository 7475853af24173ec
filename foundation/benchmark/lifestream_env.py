"""The pytorch-lifestream (ptls) environment of the comparison: found, or created by its setup script."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class LifestreamUnavailable(RuntimeError):
    """The pytorch-lifestream environment is missing and could not be created (the reason says why)."""


def ensure_lifestream_env(create: bool, timeout: float, log_path: Path) -> Path:
    """The ptls interpreter; runs benchmarks/lifestream/setup_env.sh first when the environment is missing.

    Raises:
        LifestreamUnavailable: missing and `create` is off, or the setup failed / timed out (with its log).
    """
    from benchmarks.lifestream.harness import LifestreamEnvMissing, lifestream_python

    try:
        return lifestream_python()
    except LifestreamEnvMissing as err:
        if not create:
            raise LifestreamUnavailable(f"{err} (lifestream.create_env is false)") from None
    script = ROOT / "benchmarks" / "lifestream" / "setup_env.sh"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"creating the pytorch-lifestream environment ({script}; a few minutes), log {log_path}", flush=True)
    with open(log_path, "w") as out:
        try:
            done = subprocess.run(["bash", str(script)], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LifestreamUnavailable(f"setup_env.sh did not finish in {timeout:.0f} s; log {log_path}") from None
    if done.returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-15:])
        raise LifestreamUnavailable(f"setup_env.sh failed (exit {done.returncode}); log {log_path}:\n{tail}")
    try:
        return lifestream_python()
    except LifestreamEnvMissing as err:
        raise LifestreamUnavailable(str(err)) from None
