"""What every entry point shares: user errors print one clear line (no stack trace to decode), the result
path is the last line of output so scripts can be chained."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

# Errors a user causes with a bad override, bad data or a missing file: shown as one line, exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, KeyError)


def run_cli(job: Callable[[], Path | str | None]) -> None:
    """Run `job`; print its returned path as the last line; turn user errors into a clean exit."""
    try:
        result = job()
    except USER_ERRORS as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if result is not None:
        print(result, flush=True)
