"""What a pretraining run continues with: a resume (`ckpt_path=last`) reads the run's own saved config, refuses
an override that would change what the run is, and checks the checkpoint and the run folder, all before
anything is written. `ResumeGuard` runs these checks before Hydra creates its output folder.

A run folder holds `config.yaml` (the resolved config the run trains with) and `overrides.yaml` (the
command-line overrides it was started with). A resume composes the saved overrides with the new ones, and
only changes that leave the run the same model, data and optimisation are accepted (`RESUMABLE`).
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

CONFIG_FILE = "config.yaml"
OVERRIDES_FILE = "overrides.yaml"

# Keys (and subtrees) a resume may change: where the run lives, how long and on what hardware it trains,
# and what it logs. Anything else (model, data, objective, optimizer, seed, batches) is the run itself.
RESUMABLE = (
    "run_name", "run_dir", "run_label", "sweep_name", "ckpt_path", "paths.output_dir", "callbacks", "logger",
    "datamodule.num_workers", "trainer.max_epochs", "trainer.max_steps", "trainer.max_time", "trainer.devices",
    "trainer.accelerator", "trainer.strategy", "trainer.num_nodes", "trainer.precision",
    "trainer.enable_progress_bar", "trainer.log_every_n_steps", "trainer.default_root_dir", "compile",
)


class ConfigError(ValueError):
    """A Hydra override or config value that cannot work, with the key and the valid choices."""


def check_writable(run_dir: Path) -> None:
    """Raise ConfigError when `run_dir` cannot be created or written (checked before anything is written)."""
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing.is_dir() else "is not a folder"
        raise ConfigError(f"run_dir: cannot write the run folder {run_dir}: {existing} {what}")


def _intact(path: Path) -> bool:
    """A Lightning checkpoint is a zip archive; a truncated or empty file has no central directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def check_checkpoint(path: Path) -> None:
    """Raise ConfigError naming `path` and the newest intact checkpoint next to it when `path` is corrupt."""
    if _intact(path):
        return
    others = sorted((p for p in path.parent.glob("*.ckpt") if p.resolve() != path.resolve()),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    newest = next((p for p in others if _intact(p)), None)
    hint = (f"the newest intact checkpoint in {path.parent} is {newest.name}: resume from it with ckpt_path={newest}"
            if newest else f"there is no intact checkpoint in {path.parent}")
    raise ConfigError(f"ckpt_path: {path} is corrupt or truncated ({path.stat().st_size} bytes); {hint}")


def resolve_ckpt_path(cfg: DictConfig) -> Path | None:
    """`ckpt_path=last` is `<run_dir>/last.ckpt`; any other value is a path; null starts fresh.

    Raises:
        ConfigError: the checkpoint does not exist or is corrupt.
    """
    if cfg.ckpt_path in (None, ""):
        return None
    path = Path(cfg.run_dir) / "last.ckpt" if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    if not path.exists():
        raise ConfigError(f"ckpt_path: {path} does not exist (run_name={cfg.run_name!r}; set it to the run to resume)")
    check_checkpoint(path)
    return path


def _flat(cfg: DictConfig) -> dict[str, Any]:
    """Resolved leaves as dotted keys (lists are leaves); `hydra` and the Hydra output folder left out."""
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    with open_dict(cfg):
        if "paths" in cfg:
            cfg.paths.output_dir = None
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def _resumable(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUMABLE)


def _merge_overrides(saved: list[str], new: list[str]) -> list[str]:
    """`saved` with each override of `new` replacing the one of the same key (or appended)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    merged: dict[str, str] = {}
    for override in parser.parse_overrides(saved) + parser.parse_overrides(new):
        key = override.key_or_group if override.package is None else f"{override.key_or_group}@{override.package}"
        merged.pop(key, None)
        merged[key] = override.input_line
    return list(merged.values())


def _saved_overrides(run_dir: Path) -> list[str] | None:
    for path in (run_dir / OVERRIDES_FILE, run_dir / "hydra" / ".hydra" / "overrides.yaml"):
        if path.exists():
            return [str(o) for o in OmegaConf.load(path)]
    return None


def _changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    missing = "<absent>"
    return {k: (before.get(k, missing), after.get(k, missing)) for k in sorted(set(before) | set(after))
            if before.get(k, missing) != after.get(k, missing)}


def _is_resume(cfg: DictConfig) -> bool:
    """A checkpoint of this run folder is given and the run saved its config."""
    run_dir = Path(str(cfg.run_dir))
    if cfg.get("ckpt_path") in (None, "") or not (run_dir / CONFIG_FILE).exists():
        return False
    return cfg.ckpt_path == "last" or Path(str(cfg.ckpt_path)).resolve().parent == run_dir.resolve()


def _apply(config: DictConfig, changes: dict[str, tuple[Any, Any]]) -> None:
    with open_dict(config):
        for key, (_, value) in changes.items():
            if value != "<absent>":
                OmegaConf.update(config, key, value, force_add=True)
            elif OmegaConf.select(config, key) is not None:
                _delete(config, key)


def _delete(config: DictConfig, key: str) -> None:
    """Delete `key` and the parents it leaves empty (`~callbacks.kill` removes the whole callback)."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(config, parent) if parent else config
    del node[leaf]
    if parent and len(node) == 0:
        _delete(config, parent)


def resume_config(cfg: DictConfig, overrides: list[str] | None = None, config_name: str | None = None
                  ) -> DictConfig:
    """The config a run continues with: `cfg` for a new run; on a resume, the run's saved config with the
    command line's resumable changes (`RESUMABLE`: more epochs, other devices, loggers, callbacks).

    Args:
        cfg: the composed config of this invocation (without the `hydra` node).
        overrides: this invocation's command-line overrides; with `config_name` inside a Hydra app they are
            composed over the run's saved overrides, so only what the user set is compared. Without them
            `cfg` itself must agree with the saved config.
        config_name: the primary config (`pretrain`).
    Raises:
        ConfigError: an override would change the run (model, data, objective, ...), named with both values.
    """
    if not _is_resume(cfg):
        return cfg
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra

    run_dir = Path(str(cfg.run_dir))
    saved = OmegaConf.load(run_dir / CONFIG_FILE)
    saved_overrides = _saved_overrides(run_dir)
    pinned = [f"run_name={cfg.run_name}"]
    if overrides is not None and saved_overrides is not None and config_name and GlobalHydra.instance().is_initialized():
        before = compose(config_name, _merge_overrides(saved_overrides, pinned))
        after = compose(config_name, _merge_overrides(saved_overrides, [*overrides, *pinned]))
        changes = _changes(_flat(before), _flat(after))
    else:
        changes = {k: v for k, v in _changes(_flat(saved), _flat(cfg)).items() if not k.startswith("logger.")}
    conflicts = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items() if not _resumable(k)]
    if conflicts:
        shown = "; ".join(conflicts[:4]) + (f"; and {len(conflicts) - 4} more" if len(conflicts) > 4 else "")
        raise ConfigError(
            f"ckpt_path: resuming {run_dir} with these overrides would change the run ({shown}); nothing was "
            f"written. Resume with only run_name={cfg.run_name} ckpt_path={cfg.ckpt_path} (the run's own "
            f"{CONFIG_FILE} is used), or start a new run_name")
    _apply(saved, changes)
    with open_dict(saved):
        saved.ckpt_path = cfg.ckpt_path
        if "paths" in cfg:
            saved.paths.output_dir = OmegaConf.to_container(cfg.paths, resolve=False).get("output_dir")
    return saved


def check_run(cfg: DictConfig, overrides: list[str] | None = None, config_name: str | None = None
              ) -> DictConfig:
    """Every check of a run before anything is written: the run folder is writable, a resume's overrides
    agree with the run (`resume_config`), its checkpoint exists and is intact. Returns the config to run."""
    check_writable(Path(str(cfg.run_dir)))
    cfg = resume_config(cfg, overrides, config_name)
    resolve_ckpt_path(cfg)
    return cfg


class ResumeGuard(Callback):
    """Hydra callback (`hydra.callbacks` in conf/pretrain.yaml): runs `check_run` before Hydra creates the
    job's output folder inside the run, so a refused resume leaves the run folder untouched."""

    def on_run_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        cfg = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
        try:
            check_run(cfg, [str(o) for o in config.hydra.overrides.task], config_name)
        except ConfigError as exc:
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
