"""Side-by-side harness: run pytorch-lifestream CoLES (RNN and transformer) on our sequence shards.

ptls cannot be installed beside our stack (its spacy==3.7.4 pin needs typer<0.10; transformers 5 brings typer
0.29), so it lives in its own virtual environment (`bash benchmarks/lifestream/setup_env.sh` ->
`.venv-lifestream`) and this module, which runs in ours, drives `run_coles.py` there through a subprocess.

    from benchmarks.lifestream.harness import run_lifestream_benchmark
    results = run_lifestream_benchmark("data/synthetic/sequences/pretrain", hidden=128, steps=200,
                                       out_dir="outputs/bench/lifestream", schema=schema)
    results["rnn"]["events_per_s"], results["transformer"]["pit_embeddings"]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RUN_COLES = Path(__file__).resolve().parent / "run_coles.py"
DEFAULT_VENV = ROOT / ".venv-lifestream"
ENCODERS = ("rnn", "transformer")


class LifestreamEnvMissing(FileNotFoundError):
    """The isolated pytorch-lifestream environment is not there (run benchmarks/lifestream/setup_env.sh)."""


def lifestream_python(python: str | os.PathLike | None = None) -> Path:
    """The interpreter of the ptls environment: `python`, else $LIFESTREAM_PYTHON, else .venv-lifestream.

    Raises:
        LifestreamEnvMissing: with the command that creates it.
    """
    candidate = Path(python or os.environ.get("LIFESTREAM_PYTHON") or DEFAULT_VENV / "bin" / "python")
    if not candidate.exists():
        raise LifestreamEnvMissing(f"{candidate}: no pytorch-lifestream environment; create it with "
                                   f"`bash benchmarks/lifestream/setup_env.sh` (or set LIFESTREAM_PYTHON)")
    return candidate


def columns_from_schema(schema: Any) -> dict[str, list[str]]:
    """Feature and label columns of a DataSchema (or any object with `.fields` name -> spec with `.type`,
    and `.labels`): categorical and numeric fields become ptls inputs; text and timestamp fields are left out.

    Returns:
        {"categorical": [...], "numeric": [...], "labels": [...]}
    """
    fields = getattr(schema, "fields", None)
    if not isinstance(fields, Mapping):
        raise TypeError(f"schema: expected an object with a `fields` mapping, got {type(schema).__name__}")

    def kind(spec: Any) -> str:
        return str(spec.get("type") if isinstance(spec, Mapping) else spec.type)

    return {"categorical": [n for n, s in fields.items() if kind(s) == "categorical"],
            "numeric": [n for n, s in fields.items() if kind(s) == "numeric"],
            "labels": list(getattr(schema, "labels", None) or [])}


def _csv(values: Sequence[str]) -> str:
    return ",".join(values)


def run_coles_command(python: Path, encoder: str, seq_dir: str | os.PathLike, hidden: int, steps: int,
                      out_dir: Path, options: Mapping[str, Any]) -> list[str]:
    """The `run_coles.py` command line for one encoder; `options` maps flag names (without --) to values,
    True for a bare flag, None/False to leave it out."""
    cmd = [str(python), str(RUN_COLES), "--seq-dir", os.fspath(seq_dir), "--out", str(out_dir),
           "--encoder", encoder, "--hidden", str(hidden), "--steps", str(steps)]
    for name, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            cmd.append(flag)
        else:
            cmd += [flag, _csv(value) if isinstance(value, (list, tuple)) else str(value)]
    return cmd


def _run(cmd: list[str], log_path: Path, timeout: float | None) -> None:
    """Run a command, copying its output to our stderr (progress) and to `log_path`; a failure names the log.

    Raises:
        subprocess.TimeoutExpired: after `timeout` seconds (the child is killed).
        RuntimeError: non-zero exit, with the end of the log.
    """
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)

        def copy() -> None:
            for line in proc.stdout:
                log.write(line)
                sys.stderr.write(line)

        reader = threading.Thread(target=copy, daemon=True)
        reader.start()
        try:
            proc.wait(timeout=timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            reader.join()
    if proc.returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"pytorch-lifestream run failed (exit {proc.returncode}); log {log_path}:\n{tail}")


def run_lifestream_benchmark(seq_dir: str | os.PathLike, hidden: int, steps: int, out_dir: str | os.PathLike, *,
                             encoders: Sequence[str] = ENCODERS, schema: Any = None,
                             categorical: Sequence[str] | None = None, numeric: Sequence[str] | None = None,
                             labels: Sequence[str] | None = None, exclude: Sequence[str] = (),
                             embed_seq_dir: str | os.PathLike | None = None, entity_type: str = "customer",
                             batch_size: int = 32, max_len: int = 128, warmup: int = 5, threads: int = 2,
                             python: str | os.PathLike | None = None, timeout: float | None = None,
                             **options: Any) -> dict[str, dict]:
    """Train ptls CoLES with each encoder on `seq_dir`, measure events/s, write its embeddings.

    Args:
        seq_dir: our sequence folder (`<seq_dir>/<entity_type>/part-*.parquet`, architecture.md section 3),
            e.g. the pretraining period's.
        hidden: width of both ptls encoders (GRU hidden size; transformer d_model).
        steps: optimizer steps of CoLES training (0 with `init_from=<previous out>/<encoder>`: embed only).
        out_dir: results go to `<out_dir>/<encoder>/` (result.json, model.pt, features.json, embeddings).
        encoders: any of "rnn", "transformer".
        schema: a DataSchema: its categorical/numeric fields are the inputs, its labels are never inputs.
        categorical, numeric, labels: explicit column lists instead of (or over) `schema`. Without either,
            run_coles infers features from list types, which needs `labels` (labels are list<double>).
        exclude: columns to leave out when inferring (e.g. text fields).
        embed_seq_dir: shards to embed (e.g. a folder with the whole history up to the test period);
            defaults to `seq_dir`. Vocabularies always come from `seq_dir`.
        batch_size, max_len, warmup, threads: see run_coles.py (entities per batch, longest sub-sequence and
            transformer window, untimed first batches, torch threads).
        python: interpreter of the ptls environment (default: $LIFESTREAM_PYTHON or .venv-lifestream).
        timeout: seconds per encoder run.
        **options: any other run_coles.py flag by its name, e.g. split_count=5, pit_from="2024-04-01",
            pit_where="event_type=charge,decline", pit_stride=8, layers=4, rnn_layers=1, init_from=...

    Returns:
        encoder -> result.json of that run: encoder, hidden, events_per_s, events_per_cpu_s, steps, params,
        wall_s, ..., entity_embeddings and pit_embeddings (parquet paths), model.
    Raises:
        LifestreamEnvMissing: the ptls environment is not set up.
        RuntimeError: a run failed (message holds the end of its log).
    """
    python_path = lifestream_python(python)
    unknown = [e for e in encoders if e not in ENCODERS]
    if unknown:
        raise ValueError(f"encoders: unknown {unknown}; expected a subset of {list(ENCODERS)}")
    columns = columns_from_schema(schema) if schema is not None else {}
    categorical = categorical if categorical is not None else columns.get("categorical")
    numeric = numeric if numeric is not None else columns.get("numeric")
    labels = labels if labels is not None else columns.get("labels")
    out_root = Path(out_dir)
    results: dict[str, dict] = {}
    for encoder in encoders:
        run_dir = out_root / encoder
        run_dir.mkdir(parents=True, exist_ok=True)
        flags = {"categorical": categorical, "numeric": numeric,
                 "labels": labels if labels is None or len(labels) else "", "exclude": list(exclude) or None,
                 "embed_seq_dir": embed_seq_dir, "entity_type": entity_type, "batch_size": batch_size,
                 "max_len": max_len, "warmup": warmup, "threads": threads, **options}
        cmd = run_coles_command(python_path, encoder, seq_dir, hidden, steps, run_dir, flags)
        _run(cmd, run_dir / "run.log", timeout)
        results[encoder] = json.loads((run_dir / "result.json").read_text())
        results[encoder]["command"] = cmd
    (out_root / "lifestream_results.json").write_text(json.dumps(results, indent=1) + "\n")
    return results
