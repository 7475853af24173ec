"""Pretraining throughput on one GPU: events/s and MFU of `experiment=gpu` (bf16, torch.compile, fused AdamW).

    python scripts/gpu_throughput.py                                    # 50 warm-up + 300 timed steps
    python scripts/gpu_throughput.py --steps 100 model=mingru           # any pretrain override after the options
    python scripts/gpu_throughput.py synthetic.n_events=500000          # a smaller synthetic world, faster to build

It composes conf/pretrain.yaml with `experiment=gpu compile=true`, prepares the synthetic world (generated on
first use), trains `--warmup` steps (compilation and recompiles happen there) and then `--steps` timed steps
with no validation, logging or checkpoints, and prints:
- events/s: real events (not padding) per second of the timed steps;
- FLOPs per event, counted analytically by `foundation.model.flops.training_flops_per_event`: 6 x the
  matrices' parameters (x2 for the backbone when the masked objective runs it twice) + PaLM's 12*L*H*T for
  attention; embedding lookups and elementwise work are not counted;
- MFU = events/s x FLOPs per event / the device's dense bf16 peak, from `BF16_PEAK_FLOPS` ("peak unknown"
  for a device not in it).
The last line is a markdown table row for the README. On a machine without CUDA it prints one line and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Dense bf16 tensor-core peak (NVIDIA datasheets; the "with sparsity" figures are twice these). First match wins.
BF16_PEAK_FLOPS = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12))


def bf16_peak(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a device by (part of) its name, None when unknown."""
    for fragment, peak in BF16_PEAK_FLOPS:
        if fragment.lower() in device_name.lower():
            return peak
    return None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="timed optimisation steps")
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps first (compilation happens here)")
    parser.add_argument("--cpu", action="store_true",
                        help="smoke-test this script on CPU (fp32, no compile, no peak): checks the wiring only")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/pretrain.yaml, e.g. model=mingru")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error(f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
    return args


def compose_config(overrides: list[str], cpu: bool):
    """conf/pretrain.yaml with experiment=gpu and compile on, then the user's overrides."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    fixed = ["experiment=gpu", "compile=true"]
    if cpu:
        fixed += ["trainer.accelerator=cpu", "trainer.precision=32-true", "compile=false", "optimizer.fused=null"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("pretrain", overrides=[*fixed, *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(Path(cfg.run_dir) / "throughput")  # not a Hydra run: no runtime dir
        del cfg["hydra"]
    return cfg


def throughput_meter(warmup_steps: int, synchronize):
    """A Lightning callback timing the steps after `warmup_steps` and counting their real events."""
    import pytorch_lightning as pl

    class ThroughputMeter(pl.Callback):
        def __init__(self) -> None:
            self.started: float | None = None
            self.elapsed = 0.0
            self.events = 0  # a device tensor once counting starts: no host sync per step
            self.positions = 0
            self.steps = 0

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            if self.started is None and trainer.global_step >= warmup_steps:
                synchronize()
                self.started = time.perf_counter()
            if self.started is not None:
                self.events = self.events + batch["attention_mask"].sum()
                self.positions += batch["attention_mask"].numel()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            if self.started is not None:
                self.steps += 1
                if trainer.global_step >= trainer.max_steps:
                    synchronize()
                    self.elapsed = time.perf_counter() - self.started

    return ThroughputMeter()


def train_and_time(cfg, steps: int, warmup: int, synchronize):
    """Prepare data, build model and datamodule as `foundation.training.pretrain` does, train, time."""
    import hydra
    import pytorch_lightning as pl
    from omegaconf import OmegaConf

    from foundation.preparation import prepare_pretraining_data
    from foundation.training import build_model_config, drop_lightning_tips

    drop_lightning_tips()
    pl.seed_everything(int(cfg.seed), workers=True)
    data = prepare_pretraining_data(cfg)
    model_config = build_model_config(cfg, data.tokenizer.field_specs(), list(data.tokenizer.entity_types))
    window = int(cfg.datamodule.max_len or model_config.max_position)
    datamodule = hydra.utils.instantiate(
        cfg.datamodule, encoded=data.encoded, tokenizer=data.tokenizer, max_len=window,
        views=int(cfg.objective.views), seed=int(cfg.seed), _recursive_=False,
    )
    module_kwargs = dict(model_config=model_config.to_dict(), seed=int(cfg.seed), compile=bool(cfg.compile),
                         optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
                         scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True))
    from foundation.lightning.pretraining import PretrainingModule

    module = PretrainingModule(**module_kwargs)  # experiment=gpu sets optimizer.fused (AdamW's fused kernel)
    meter = throughput_meter(warmup, synchronize)
    trainer = hydra.utils.instantiate(
        cfg.trainer, max_epochs=-1, max_steps=warmup + steps, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[meter],
        use_distributed_sampler=False,
    )
    trainer.fit(module, datamodule=datamodule)
    return module, meter, window


def report(cfg, module, meter, window: int, warmup: int, device_name: str, peak: float | None) -> list[str]:
    """The printed lines: setup, events/s, FLOPs, MFU, and a README table row."""
    from foundation.model.flops import training_flops_per_event

    config = module.config
    flops = training_flops_per_event(module.model, window)
    events = int(meter.events)
    events_per_s = events / meter.elapsed if meter.elapsed > 0 else float("nan")
    achieved = events_per_s * flops.total
    compiled = module._compiled is not None and module._compiled.is_compiled
    mfu = f"{100 * achieved / peak:.1f}%" if peak else "peak unknown"
    peak_text = f"{peak / 1e12:.0f} TFLOP/s dense bf16" if peak else "peak unknown"
    padding = 1 - events / meter.positions if meter.positions else 0.0
    model = f"{config.encoder_type} H={config.hidden_size} L={config.num_layers}"
    return [
        f"device: {device_name} ({peak_text}); precision {cfg.trainer.precision}, compile "
        f"{'on' if cfg.compile else 'off'} ({'compiled' if compiled else 'eager'})",
        f"model: {model}, window {window}, batch {cfg.datamodule.batch_size} entities x {cfg.objective.views} views, "
        f"objectives {dict(config.objectives)}",
        f"timed: {meter.steps} steps after {warmup} warm-up steps, {meter.elapsed:.1f} s, "
        f"{events:,} real events ({100 * padding:.0f}% of positions are padding)",
        f"events/s: {events_per_s:,.0f}",
        f"FLOPs/event: {flops.total:.3g} (matrices: backbone {flops.backbone_parameters:,} x {flops.backbone_passes} "
        f"passes, heads {flops.head_parameters:,}; attention {flops.attention:.3g} per pass)",
        f"achieved: {achieved / 1e12:.1f} TFLOP/s; MFU: {mfu}",
        f"| {device_name} | {model} | {cfg.trainer.precision} | {events_per_s:,.0f} | {achieved / 1e12:.1f} | {mfu} |",
    ]


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    import torch

    if args.cpu:
        device_name, peak, synchronize = "CPU", None, lambda: None
    elif not torch.cuda.is_available():
        print("no GPU: torch sees no CUDA device, so there is no GPU throughput to measure (nothing was run)")
        return 0
    else:
        device_name = torch.cuda.get_device_name(0)
        peak, synchronize = bf16_peak(device_name), torch.cuda.synchronize
    from hydra.errors import HydraException

    from foundation.cli import USER_ERRORS

    try:
        cfg = compose_config(args.overrides, cpu=args.cpu)
        module, meter, window = train_and_time(cfg, args.steps, args.warmup, synchronize)
    except (*USER_ERRORS, HydraException) as error:  # a bad override or missing data: one line, no traceback
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    if meter.steps == 0:
        print(f"error: no timed step ran (the run stopped after {module.global_step} steps)", file=sys.stderr)
        return 1
    print("\n".join(report(cfg, module, meter, window, args.warmup, device_name, peak)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
