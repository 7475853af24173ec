"""A pretraining run as every downstream stage reads it: fine-tuning, the Embedder and the service.

`PretrainedRun.load(path)` finds `<run>/hf` (model, tokenizer, next-event heads) and `<run>/config.yaml` (the data
config); the run then gives its data schema, the aggregate bucket specs its tokenizer was fitted on, its event
surprise, a content digest of its weights (the service's model version), and its data as a SequenceStore.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from foundation.data.aggregates import AggregateSpec, count_column_name, resolve_aggregate_spec
from foundation.data.schema import DataSchema
from foundation.pointintime.states import SequenceStore

log = logging.getLogger(__name__)


def locate_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """(hf folder, run folder) of a path naming a pretraining run folder or its hf/ folder.

    Raises:
        FileNotFoundError: neither holds config.json (naming what was looked for).
    """
    path = Path(path)
    hf = path if (path / "config.json").exists() else path / "hf"
    if not (hf / "config.json").exists():
        raise FileNotFoundError(f"checkpoint {path}: no config.json there nor in {path / 'hf'} "
                                "(pass a pretraining run folder, e.g. checkpoints/<run>, or its hf/ folder)")
    return hf, hf.parent


def run_config(run_dir: Path) -> DictConfig | None:
    """The resolved Hydra config a pretraining run saved (`config.yaml`), or None."""
    path = Path(run_dir) / "config.yaml"
    return OmegaConf.load(path) if path.exists() else None


@dataclass
class PretrainedRun:
    """What a pretraining run wrote.

    Attributes:
        hf_dir: `<run>/hf` (config.json, model.safetensors, tokenizer files).
        run_dir: the run folder (config.yaml, csv/metrics.csv, ...).
        model: FoundationModel in eval mode.
        tokenizer: the EventTokenizer saved with it.
        config: the run's resolved config.yaml (None when only an hf folder was given).
    """

    hf_dir: Path
    run_dir: Path
    model: Any
    tokenizer: Any
    config: DictConfig | None
    _surprise: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, path: str | Path) -> PretrainedRun:
        from foundation.model import FoundationModel
        from foundation.tokenization import EventTokenizer

        hf, run = locate_checkpoint(path)
        if not (hf / "tokenizer_config.json").exists():
            raise FileNotFoundError(f"{hf}: no tokenizer_config.json (the tokenizer is saved with the model)")
        return cls(hf, run, FoundationModel.from_pretrained(hf).eval(), EventTokenizer.from_pretrained(hf),
                   run_config(run))

    @property
    def surprise(self) -> Any:
        """EventSurprise of the run's next-event heads (`next_event_heads.safetensors`), or None."""
        if self._surprise is None:
            from foundation.pointintime.surprise import EventSurprise

            self._surprise = EventSurprise.load(self.hf_dir, self.model.config, self.tokenizer.field_specs()) or False
        return self._surprise or None

    def schema(self, fallback_data: Any = None) -> DataSchema:
        """The data schema the run was trained with (its config.yaml); else `fallback_data`'s, with a warning."""
        if self.config is not None and "data" in self.config:
            return DataSchema.from_config(self.config.data)
        config = self.run_dir / "config.yaml"
        if fallback_data is None:
            raise FileNotFoundError(f"{config} not found and no data config given: cannot tell the event schema")
        log.warning("%s not found: using the given data schema; make sure it is the training one", config)
        return DataSchema.from_config(fallback_data)

    def digest(self) -> str:
        """First 12 hex digits of the sha256 of the run's weights files (`hf/*.safetensors`)."""
        digest = hashlib.sha256()
        for path in sorted(self.hf_dir.glob("*.safetensors")):
            with open(path, "rb") as handle:
                for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(chunk)
        return digest.hexdigest()[:12]

    @property
    def loss_log(self) -> Path | None:
        """The pretraining CSV log (`<run>/csv/metrics.csv`) when the run used the csv logger."""
        path = self.run_dir / "csv" / "metrics.csv"
        return path if path.exists() else None

    def data_config(self, data: Any = None, paths: Any = None) -> DictConfig:
        """The config `foundation.preparation.prepare` reads: `data` (given, or the run's), `paths`,
        `synthetic` and `tokenizer` (the run's, so its prepared folder is found again, not rebuilt).

        Args:
            data: a data config (DictConfig/dict, or a conf/data/<name>.yaml path) of other events; None =
                the data the run was trained on.
            paths: `paths` entries (root_dir, data_dir) the data config interpolates; default the run's.
        Raises:
            ValueError: no data config given and the run has no config.yaml.
        """
        base = OmegaConf.to_container(self.config, resolve=True) if self.config is not None else {}
        if data is None and "data" not in base:
            raise ValueError(f"{self.run_dir}/config.yaml not found: pass the data config of the events "
                             "(data=<name>)")
        cfg = OmegaConf.create({key: base[key] for key in ("paths", "synthetic", "tokenizer") if key in base})
        if paths is not None:
            cfg.paths = OmegaConf.merge(cfg.get("paths") or {}, paths)
        if data is None:
            cfg.data = base["data"]
        else:
            is_path = isinstance(data, (str, Path))
            cfg.data = OmegaConf.load(data) if is_path else data  # interpolations resolve against cfg
            if OmegaConf.to_container(cfg.data, resolve=True) != base.get("data"):
                cfg.pop("synthetic", None)  # other data: never generate the run's synthetic world into it
        return cfg

    def store(self, cfg: DictConfig, period: str = "all") -> tuple[DataSchema, SequenceStore, Path]:
        """Prepare the data of `cfg` (cached) and open its `sequences/<period>` for this run's model.

        The encodings under `<prepared>/encoded/<period>` are reused when the prepared tokenizer is the one
        saved with the model (the normal case: the run was trained on this data config); otherwise shards
        are encoded on the fly with the model's tokenizer.

        Returns:
            (schema, store, prepared folder).
        """
        from foundation.preparation import encode_period, prepare

        prepared = prepare(cfg, encode_periods=())
        encoded_dir = None
        if same_tokenizer(prepared.root / "tokenizer", self.hf_dir):
            encoded_dir = encode_period(self.tokenizer, prepared.root, period)
        else:
            log.info("the prepared tokenizer differs from %s: encoding shards on the fly", self.hf_dir)
        store = SequenceStore(prepared.root / "sequences" / period, self.tokenizer, encoded_dir)
        return prepared.schema, store, prepared.root


def same_tokenizer(a: Path, b: Path) -> bool:
    """Whether two folders hold byte-identical tokenizer files (config and text tokenizers)."""
    files = ["tokenizer_config.json"] + sorted(p.name for p in Path(a).glob("text_*.tokenizer.json"))
    for name in files:
        fa, fb = Path(a) / name, Path(b) / name
        if not (fa.exists() and fb.exists()) or fa.read_bytes() != fb.read_bytes():
            return False
    return True


def aggregate_specs(schema: DataSchema, tokenizer: Any) -> dict[str, AggregateSpec]:
    """AggregateSpec of each aggregate entity type, as the training sequences computed it.

    The counted values (`agg_n_<value>`) are the values of the count field (event_type) whose count column
    the tokenizer was fitted on; every agg_* column the tokenizer knows must be reproduced, else an error.
    """
    fields = [(f.name, f.type) for f in schema.fields.values()]
    known = {name for name in tokenizer.field_names if name.startswith("agg_")}
    empty = schema.canonical_schema().empty_table()
    out = {}
    for ent in schema.entities.values():
        if ent.representation != "aggregate":
            continue
        probe = resolve_aggregate_spec(ent.type, int(ent.bucket_ms), fields, empty, np.zeros(0, np.int64),
                                       count_values=[])
        values: list[str] = []
        if probe.count_by is not None:
            encoder = next((e for e in tokenizer.encoders if e.name == probe.count_by), None)
            values = [v for v in getattr(encoder, "vocab", []) if count_column_name(v) in known]
        spec = resolve_aggregate_spec(ent.type, int(ent.bucket_ms), fields, empty, np.zeros(0, np.int64),
                                      count_by=probe.count_by, count_values=values)
        missing = sorted(set(known) - set(spec.columns()))
        if missing:
            raise ValueError(f"entity {ent.type}: the tokenizer knows aggregate fields {missing} that the "
                             "schema cannot reproduce; was the model trained on this data config?")
        out[ent.type] = spec
    return out
