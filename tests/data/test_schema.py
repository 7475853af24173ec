"""DataSchema: building from YAML/dicts and a clear SchemaError for every kind of bad config."""

from __future__ import annotations

import copy
from datetime import datetime

import pyarrow as pa
import pytest
from omegaconf import OmegaConf

from foundation.data.schema import DataSchema, DataValidationError, SchemaError, parse_duration
from tests.data.raw_events import CONF_DATA, small_schema_dict


def test_synthetic_yaml_matches_the_contract(tmp_path):
    schema = DataSchema.from_yaml(CONF_DATA / "synthetic.yaml", root={"paths": {"data_dir": str(tmp_path)}})
    assert schema.name == "synthetic"
    assert schema.source.path == f"{tmp_path}/synthetic/events" and schema.source.format == "parquet"
    assert schema.validation.quarantine_dir == f"{tmp_path}/synthetic/quarantine"
    assert {e: s.column for e, s in schema.entities.items()} == {
        "customer": "card_id", "merchant": "merchant_id", "issuer": "issuer_id"}
    assert schema.entities["issuer"].representation == "aggregate"
    assert schema.entities["issuer"].bucket_ms == 3_600_000
    assert schema.entities["merchant"].representation == "events"
    assert {n for n, f in schema.fields.items() if f.outcome} == {"event_type", "decline_code"}
    assert schema.fields["descriptor"].column == "merchant_descriptor"
    assert schema.fields["descriptor"].type == "text"
    assert schema.fields["amount"].min == 0
    assert list(schema.labels) == ["is_fraud", "approved"]
    assert schema.splits.test.start == datetime(2024, 5, 20)
    assert schema.splits.label_delay_ms == 7 * 86_400_000
    names = schema.canonical_schema().names
    assert names[:5] == ["event_id", "event_time", "customer_id", "merchant_id", "issuer_id"]
    assert names[-2:] == ["is_fraud", "approved"]
    assert schema.canonical_schema().field("event_time").type == pa.timestamp("ms")


def test_from_config_resolves_against_the_composed_root(tmp_path):
    """Inside a Hydra app the dataset node is cfg.data and ${paths.*} lives at the root."""
    cfg = OmegaConf.create({"paths": {"data_dir": str(tmp_path)},
                            "data": OmegaConf.load(CONF_DATA / "synthetic.yaml")})
    assert DataSchema.from_config(cfg.data).source.path == f"{tmp_path}/synthetic/events"


def test_unresolvable_interpolation_names_the_key():
    with pytest.raises(SchemaError, match=r"^source: cannot resolve"):
        DataSchema.from_yaml(CONF_DATA / "synthetic.yaml")


def test_sparkov_yaml_path_from_override_or_env(tmp_path, monkeypatch):
    root = {"paths": {"root_dir": str(tmp_path / "repo"), "data_dir": str(tmp_path / "data")}}
    monkeypatch.delenv("SPARKOV_PATH", raising=False)
    default = DataSchema.from_yaml(CONF_DATA / "sparkov.yaml", root=root)
    assert default.source.path == f"{tmp_path}/repo/../shared/data/sparkov/transactions.parquet"
    monkeypatch.setenv("SPARKOV_PATH", "/elsewhere/tx.parquet")
    assert DataSchema.from_yaml(CONF_DATA / "sparkov.yaml", root=root).source.path == "/elsewhere/tx.parquet"
    overridden = DataSchema.from_yaml(CONF_DATA / "sparkov.yaml", overrides=["source.path=/x/y.parquet"], root=root)
    assert overridden.source.path == "/x/y.parquet"
    splits = overridden.splits
    assert splits.pretrain.end <= splits.validation.start
    assert splits.train.end_ms + splits.label_delay_ms <= splits.validation.start_ms
    assert splits.validation.end_ms + splits.label_delay_ms <= splits.test.start_ms
    assert "issuer" not in overridden.entities and overridden.entities["customer"].column == "card_id"


def test_minimal_config_with_shorthands():
    schema = DataSchema.from_config({"name": "pos", "source": "tx.csv", "timestamp": "time",
                                     "entities": {"customer": "card", "merchant": "terminal"}})
    assert schema.source.format == "csv"  # inferred from the extension
    assert schema.event_id is None and schema.fields == {} and schema.labels == {}
    assert schema.raw_columns == ["time", "card", "terminal"]
    assert schema.canonical_schema().names == ["event_id", "event_time", "customer_id", "merchant_id"]


def test_encoder_options_are_kept_as_extra():
    fields = {"amount": {"type": "numeric", "bins": 32}, "desc": {"type": "text", "max_tokens": 8,
                                                                    "extra": {"vocab_size": 500}}}
    schema = DataSchema.from_config(small_schema_dict(fields=fields))
    assert schema.fields["amount"].extra == {"bins": 32}
    assert schema.fields["amount"].column == "amount"  # column defaults to the field name
    assert schema.fields["desc"].extra == {"max_tokens": 8, "vocab_size": 500}


@pytest.mark.parametrize("where, key, hint", [
    ("fields.amount", "nullable", None), ("fields.amount", "maximum", None),
    ("fields.descriptor", "max_token", "max_tokens"), ("fields.descriptor.extra", "vocab", None),
    ("data", "some_stage", None), ("data", "label", "labels")])
def test_every_unknown_key_is_rejected_naming_it_and_the_valid_keys(where, key, hint):
    cfg = small_schema_dict()
    if where == "data":
        cfg[key] = {"shard_size": 10}
    elif where.endswith(".extra"):
        cfg["fields"]["descriptor"]["extra"] = {key: 1}
    else:
        cfg["fields"][where.split(".")[1]][key] = 1
    with pytest.raises(SchemaError) as err:
        DataSchema.from_config(cfg)
    message = str(err.value)
    assert message.startswith(f"{where}.{key}: unknown key"), message
    assert "\n" not in message
    valid = {"data": "name, source, timestamp", "fields.descriptor.extra": "bins, num_bins, log"}.get(
        where, "column, type, outcome, min, max, allow_null")
    assert f"(valid keys: {valid}" in message
    if hint:
        assert f"did you mean '{hint}'" in message


@pytest.mark.parametrize("value, expected", [
    ("1h", 3_600_000), ("15min", 900_000), ("1d", 86_400_000), ("7D", 604_800_000), ("500ms", 500),
    ("90s", 90_000), ("2w", 1_209_600_000), ("1.5h", 5_400_000), ("30T", 1_800_000), (0, 0)])
def test_parse_duration(value, expected):
    assert parse_duration(value, "k") == expected


@pytest.mark.parametrize("value, message", [("5m", "ambiguous"), ("1 fortnight", "cannot parse"),
                                            ("h", "cannot parse"), (3600, "cannot parse")])
def test_parse_duration_errors(value, message):
    with pytest.raises(SchemaError, match=f"^my.key: .*{message}"):
        parse_duration(value, "my.key")


def _set(cfg: dict, dotted: str, value) -> dict:
    node = cfg
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return cfg


_DELETE = object()

BAD_CONFIGS = [
    # (config key, new value, substrings the message must contain)
    ("fields.amount.type", "money", ["fields.amount.type", "'money'", "categorical"]),
    ("fields.amount.type", _DELETE, ["fields.amount.type", "required"]),
    ("fields.amount.allow_nul", False, ["fields.amount.allow_nul", "did you mean 'allow_null'"]),
    ("fields.amount.min", "zero", ["fields.amount.min", "expected a number"]),
    ("fields.amount.max", -1, ["fields.amount", "min 0.0 is greater than max -1.0"]),
    ("fields.mcc.min", 0, ["fields.mcc", "only apply to numeric"]),
    ("fields.mcc.min_count", 0, ["fields.mcc.min_count", ">= 1"]),
    ("fields.mcc.outcome", "yes", ["fields.mcc.outcome", "true or false"]),
    ("fields.event_time", {"type": "numeric"}, ["fields.event_time", "reserved"]),
    ("fields.is_fraud", {"type": "numeric"}, ["labels.is_fraud", "already used by fields.is_fraud"]),
    ("fields.leak", {"column": "is_fraud", "type": "numeric"}, ["fields.leak.column", "labels are never features"]),
    ("fields.amount_bin", {"type": "categorical"}, ["fields.amount_bin", "clashes", "fields.amount"]),
    ("fields.bad name", {"type": "categorical"}, ["fields.bad name", "letters, digits"]),
    ("entities", {}, ["entities", "at least one"]),
    ("entities.terminal", {"column": "terminal_id"}, ["entities.terminal", "'terminal' is not one of"]),
    ("entities.issuer.bucket", _DELETE, ["entities.issuer.bucket", "required with representation 'aggregate'"]),
    ("entities.issuer.bucket", "5m", ["entities.issuer.bucket", "ambiguous"]),
    ("entities.issuer.bucket", "0h", ["entities.issuer.bucket", "positive"]),
    ("entities.merchant.bucket", "1h", ["entities.merchant.bucket", "only applies to representation 'aggregate'"]),
    ("entities.merchant.representation", "rollup", ["entities.merchant.representation", "'rollup'"]),
    ("entities.customer.column", None, ["entities.customer.column", "column name"]),
    ("timestamp", _DELETE, ["timestamp", "required"]),
    ("timestamp.unit", "minutes", ["timestamp.unit", "'minutes' is not one of s, ms, us, ns"]),
    ("source.path", "", ["source.path", "file, folder or glob"]),
    ("source.format", "json", ["source.format", "'json'", "parquet, csv"]),
    ("source", _DELETE, ["source", "required"]),
    ("name", _DELETE, ["name", "dataset name"]),
    ("nmae", "x", ["data.nmae", "did you mean 'name'"]),
    ("validation.on_error", "ignore", ["validation.on_error", "'ignore'", "raise, quarantine"]),
    ("validation.on_error", "quarantine", ["validation.quarantine_dir", "required"]),
    ("splits.test.start", "2024-05-01", ["splits.test.start", "splits.validation.end", "label_delay"]),
    ("splits.validation.start", "2024-04-10", ["splits.validation.start", "splits.train.end", "label_delay"]),
    ("splits.train.end", "2024-01-15", ["splits.train", "must be before end"]),
    ("splits.pretrain.end", "2024-05-01", ["splits.pretrain.end", "must not see the validation period"]),
    ("splits.test.end", "2024-13-45", ["splits.test.end", "'2024-13-45'", "ISO date"]),
    ("splits.test.end", _DELETE, ["splits.test.end", "required"]),
    ("splits.label_delay", "a week", ["splits.label_delay", "cannot parse"]),
    ("splits.holdout", {"start": "2025-01-01", "end": "2025-02-01"}, ["splits.holdout", "unknown key"]),
]


@pytest.mark.parametrize("key, value, parts", BAD_CONFIGS, ids=[f"{k}={v!r}"[:60] for k, v, _ in BAD_CONFIGS])
def test_bad_config_raises_schema_error_naming_the_key(key, value, parts):
    cfg = _set(copy.deepcopy(small_schema_dict()), key, value)
    with pytest.raises(SchemaError) as err:
        DataSchema.from_config(cfg)
    message = str(err.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    assert message.startswith(parts[0]), message


def test_splits_without_label_delay_gap_allowed_when_delay_is_zero():
    cfg = small_schema_dict()
    cfg["splits"] = {"train": {"start": "2024-01-01", "end": "2024-02-01"},
                     "test": {"start": "2024-02-01", "end": "2024-03-01"}}
    splits = DataSchema.from_config(cfg).splits
    assert splits.label_delay_ms == 0 and splits.validation is None
    with pytest.raises(SchemaError, match="splits.validation: not defined"):
        splits.period("validation")


def test_split_dates_accept_datetimes_and_offsets():
    cfg = small_schema_dict()
    cfg["splits"] = {"train": {"start": datetime(2024, 1, 1), "end": "2024-02-01T02:00:00+02:00"}}
    period = DataSchema.from_config(cfg).splits.train
    assert period.end == datetime(2024, 2, 1)  # converted to naive UTC
    assert period.end_ms - period.start_ms == 31 * 86_400_000


def test_check_columns_lists_missing_and_available():
    schema = DataSchema.from_config(small_schema_dict())
    with pytest.raises(DataValidationError) as err:
        schema.check_columns(["event_id", "ts", "card_id", "merchant_id", "issuer_id", "event_type", "mcc"])
    message = str(err.value)
    assert "'amount' (fields.amount.column)" in message
    assert "'merchant_descriptor' (fields.descriptor.column)" in message
    assert "'is_fraud' (labels.is_fraud.column)" in message
    assert "available columns: 'event_id', 'ts'" in message


@pytest.mark.parametrize("dataset", ["synthetic", "sparkov"])
def test_dataset_configs_compose_with_hydra(dataset, monkeypatch, tmp_path):
    """The data group composed with the project's paths group, as scripts do (`data=<name>`)."""
    from hydra import compose, initialize_config_dir

    monkeypatch.setenv("PROJECT_ROOT", str(tmp_path))
    monkeypatch.delenv("SPARKOV_PATH", raising=False)
    with initialize_config_dir(config_dir=str(CONF_DATA.parent), version_base="1.3"):
        cfg = compose(config_name=None, overrides=[f"+data={dataset}", "+paths=default",
                                                   "data.splits.label_delay=3d"])
    schema = DataSchema.from_config(cfg.data)
    assert schema.name == dataset and schema.splits.label_delay_ms == 3 * 86_400_000
    assert schema.source.path.startswith(str(tmp_path))
    assert schema.validation.quarantine_dir == f"{tmp_path}/data/{dataset}/quarantine"
