"""The fine-tune config: composing conf/finetune.yaml from Python, the tasks it names, saving it resolved."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from foundation.evaluation.splits import TaskSpec

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
ALL_TASKS = ("fraud", "authorization")


def finetune_config(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose conf/finetune.yaml from Python (e.g. the quickstart: [f"checkpoint={run_dir}"])."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside a @hydra.main app of this repo's conf/
        return compose("finetune", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("finetune", overrides=list(overrides))


def task_specs(cfg: DictConfig, names: Sequence[str] | None) -> list[TaskSpec]:
    """The config's own task (names None), else conf/task/<name>.yaml of each name."""
    if names is None:
        return [TaskSpec.from_config(cfg.task)]
    return [TaskSpec.from_config(CONF_DIR / "task" / f"{name}.yaml") for name in names]


def save_config(cfg: DictConfig, path: Path) -> None:
    """The resolved config next to the results; outside a Hydra app `paths.output_dir` (an ${hydra:}
    interpolation) cannot resolve and becomes the run folder."""
    from hydra.core.hydra_config import HydraConfig

    cfg = cfg.copy()
    if not HydraConfig.initialized() and "paths" in cfg:
        with open_dict(cfg):
            cfg.paths.output_dir = str(path.parent)
    OmegaConf.save(cfg, path, resolve=True)
