"""Every config group composes and instantiates, so a broken YAML fails here (lightning-hydra-template style)."""

from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from foundation.data.schema import DataSchema
from foundation.model import FoundationConfig
from foundation.training import ConfigError, build_model_config

CONF = Path(__file__).resolve().parents[1] / "conf"
FIELDS = [
    {"name": "time", "kind": "time", "num_bins": 34},
    {"name": "mcc", "kind": "categorical", "vocab_size": 12, "outcome": False},
    {"name": "amount", "kind": "numeric", "num_bins": 10, "outcome": False},
]


def groups(name: str) -> list[str]:
    return sorted(p.stem for p in (CONF / name).glob("*.yaml"))


def compose_pretrain(overrides: list[str], tmp_path: Path) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("pretrain", overrides=[f"paths.root_dir={tmp_path}", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "out")
        del cfg["hydra"]
    return cfg


@pytest.mark.parametrize("experiment", groups("experiment"))
def test_experiments_compose(experiment, tmp_path):
    cfg = compose_pretrain([f"experiment={experiment}"], tmp_path)
    assert cfg.experiment_name == experiment
    assert str(tmp_path) in cfg.run_dir


def test_the_quickstart_objective_is_next_event_plus_recent_and_the_command_line_replaces_it(tmp_path):
    weights = lambda *extra: dict(compose_pretrain(["experiment=default", *extra], tmp_path).objective.weights)  # noqa: E731
    assert weights() == {"next_event": 1.0, "recent": 0.3}
    assert weights("objective=next_event") == {"next_event": 1.0}
    assert weights("objective=horizon") == {"next_event": 1.0, "horizon": 1.0}


@pytest.mark.parametrize("model", groups("model"))
def test_model_presets_build(model, tmp_path):
    cfg = compose_pretrain([f"model={model}", "objective=combined"], tmp_path)
    config = build_model_config(cfg, FIELDS, ["customer", "merchant", "issuer"])
    assert isinstance(config, FoundationConfig)
    assert config.objectives == {"next_event": 1.0, "masked": 0.5, "contrastive": 0.2}
    if model == "gru":
        assert config.encoder_type == "gru"


def test_model_override_reaches_config(tmp_path):
    cfg = compose_pretrain(["model=small", "+model.hidden_size=48", "+model.num_heads=4"], tmp_path)
    assert build_model_config(cfg, FIELDS, ["customer"]).hidden_size == 48


def test_unknown_preset_is_a_clear_error(tmp_path):
    cfg = compose_pretrain([], tmp_path)
    with open_dict(cfg):
        cfg.model._target_ = "foundation.model.presets.huge"
    with pytest.raises(ConfigError, match="unknown size preset 'huge'.*small"):
        build_model_config(cfg, FIELDS, ["customer"])


@pytest.mark.parametrize("objective", groups("objective"))
def test_objectives_compose(objective, tmp_path):
    cfg = compose_pretrain([f"objective={objective}"], tmp_path)
    assert cfg.objective.weights and cfg.objective.views in (1, 2)
    config = build_model_config(cfg, FIELDS, ["customer"])
    assert set(config.objectives) == set(cfg.objective.weights)


@pytest.mark.parametrize("logger", groups("logger"))
def test_loggers_instantiate(logger, tmp_path):
    cfg = compose_pretrain([f"logger={logger}"], tmp_path)
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    if logger == "wandb":
        assert any(type(lg).__name__ == "WandbLogger" for lg in loggers)
        assert cfg.logger.wandb.offline is True  # offline by default: no account, no network


@pytest.mark.parametrize("trainer", [t for t in groups("trainer") if t != "gpu"])
def test_trainers_instantiate(trainer, tmp_path):
    cfg = compose_pretrain([f"trainer={trainer}"], tmp_path)
    callbacks = [hydra.utils.instantiate(c) for c in cfg.callbacks.values()]
    t = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=False, use_distributed_sampler=False)
    assert t.max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize("data", groups("data"))
def test_data_schemas_load(data, tmp_path):
    cfg = compose_pretrain([f"data={data}"], tmp_path)
    schema = DataSchema.from_config(cfg.data)
    assert schema.entities and schema.fields
