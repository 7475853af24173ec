"""Profile pretraining steps on CPU with torch.profiler: where a step's time goes, and how much of it is matmul.

    python scripts/profile_step.py                                  # small transformer, batch 32, windows of 64
    python scripts/profile_step.py --encoder mingru --steps 10
    python scripts/profile_step.py --out profile.md synthetic.n_events=200000   # + conf/pretrain.yaml overrides

Batches come from the quickstart's synthetic world (conf/pretrain.yaml's data, prepared and cached on first
use), collated exactly as the benchmark's training section does (one customer window per row). After
`--warmup` untimed steps, `--steps` steps run under the profiler, each split into data / forward / backward /
optimizer by `record_function` labels. Printed as markdown:
- the phases of a step (wall ms per step and share);
- the top ops by self CPU time (time in the op itself, not its children, so the rows add up);
- the matmul share: self CPU time of the dense matrix products (mm, addmm, bmm, ...) and of the fused
  attention kernel, against everything else (elementwise, norms, embedding lookups, copies, the optimizer).
Measure on an idle machine: other jobs on the cores inflate every row unevenly.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MATMUL_OPS = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmv", "aten::mv",
                        "aten::dot", "aten::addbmm"})
ATTENTION_PREFIX = "aten::_scaled_dot_product"  # fused attention kernels (their matmuls run inside)
PHASES = ("data", "forward", "backward", "optimizer")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small", help="model size preset (tiny, small, base, large)")
    parser.add_argument("--encoder", default="transformer", choices=["transformer", "gru", "mingru"])
    parser.add_argument("--batch-size", type=int, default=32, help="windows per step")
    parser.add_argument("--max-len", type=int, default=64, help="events per window")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps")
    parser.add_argument("--warmup", type=int, default=3, help="unprofiled steps first")
    parser.add_argument("--top", type=int, default=15, help="rows of the op table")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/pretrain.yaml (the data)")
    args = parser.parse_args(argv)
    if min(args.batch_size, args.max_len, args.steps, args.top) < 1 or args.warmup < 0:
        parser.error("--batch-size, --max-len, --steps and --top must be >= 1, --warmup >= 0")
    return args


def batches_and_model(args: argparse.Namespace):
    """(draw() -> batch, FoundationForPretraining, optimizer) on the prepared synthetic world's customers."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from omegaconf import open_dict

    from foundation.benchmark.context import compose_config
    from foundation.data.collate import EventCollator
    from foundation.model import FoundationForPretraining, build_config
    from foundation.preparation import prepare_pretraining_data

    cfg = compose_config("pretrain", [f"paths.root_dir={ROOT}", *args.overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(ROOT / "outputs" / "profile_step")  # not a Hydra run: no runtime dir
    data = prepare_pretraining_data(cfg)
    folder = data.root / "encoded" / "pretrain" / "customer"
    encoded = pa.concat_tables([pq.read_table(path) for path in sorted(folder.glob("part-*.parquet"))])
    field_specs, entity_types = data.tokenizer.field_specs(), list(data.tokenizer.entity_types)
    weights = {str(name): float(weight) for name, weight in cfg.objective.weights.items()}
    torch.manual_seed(0)
    config = build_config(args.preset, field_specs, entity_types, encoder_type=args.encoder,
                          max_position=args.max_len, objectives=weights)
    model = FoundationForPretraining(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    collate = EventCollator(field_specs, max_len=args.max_len, window="random", seed=0)
    rng = np.random.default_rng(0)

    def draw():
        rows = np.sort(rng.choice(encoded.num_rows, size=min(args.batch_size, encoded.num_rows), replace=False))
        return collate(encoded.take(pa.array(rows)))

    return draw, model, optimizer


def profiled_steps(draw, model, optimizer, steps: int, warmup: int):
    """Run `warmup` plain steps, then `steps` under torch.profiler. Returns (profiler, wall seconds, events)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    def step(label: bool) -> int:
        def phase(name: str):
            return record_function(name) if label else nullcontext()

        with phase("data"):
            batch = draw()
        with phase("forward"):
            loss = model(batch).loss
        with phase("backward"):
            loss.backward()
        with phase("optimizer"):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return int(batch["attention_mask"].sum())

    for _ in range(warmup):
        step(label=False)
    events = 0
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        for _ in range(steps):
            events += step(label=True)
        wall = time.perf_counter() - start
    return profiler, wall, events


def category(name: str) -> str:
    if name in MATMUL_OPS:
        return "matmul"
    if name.startswith(ATTENTION_PREFIX):
        return "attention kernel"
    return "other"


def markdown(profiler, wall: float, events: int, steps: int, top: int, title: str) -> str:
    """The three tables: phases, top ops by self CPU time, matmul share."""
    averages = profiler.key_averages()
    by_name = {event.key: event for event in averages}
    ops = [event for event in averages if event.key.startswith("aten::")]
    total_self = sum(event.self_cpu_time_total for event in ops) or 1.0
    lines = [f"### {title}", "",
             f"{steps} profiled steps, {wall / steps * 1000:.0f} ms per step (wall, under the profiler), "
             f"{events / wall:,.0f} real events/s.", "",
             "| phase | ms per step | share of the step |", "|---|---:|---:|"]
    for name in PHASES:
        ms = by_name[name].cpu_time_total / 1000 / steps if name in by_name else 0.0
        lines.append(f"| {name} | {ms:.1f} | {ms / (wall * 1000 / steps):.0%} |")
    lines += ["", "| op (self CPU time) | ms per step | share of op time | calls per step | kind |",
              "|---|---:|---:|---:|---|"]
    for event in sorted(ops, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]:
        lines.append(f"| `{event.key}` | {event.self_cpu_time_total / 1000 / steps:.1f} | "
                     f"{event.self_cpu_time_total / total_self:.1%} | {event.count / steps:.0f} | "
                     f"{category(event.key)} |")
    shares = {kind: 0.0 for kind in ("matmul", "attention kernel", "other")}
    for event in ops:
        shares[category(event.key)] += event.self_cpu_time_total
    lines += ["", "| kind | share of op time |", "|---|---:|"]
    lines += [f"| {kind} | {value / total_self:.1%} |" for kind, value in shares.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    import torch

    from foundation.cli import USER_ERRORS

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        draw, model, optimizer = batches_and_model(args)
    except USER_ERRORS as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    profiler, wall, events = profiled_steps(draw, model, optimizer, args.steps, args.warmup)
    title = (f"`{args.preset}` {args.encoder}, batch {args.batch_size}, windows of {args.max_len}, "
             f"{torch.get_num_threads()} threads, objectives {dict(model.config.objectives)}")
    text = markdown(profiler, wall, events, args.steps, args.top, title)
    print(text, flush=True)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
