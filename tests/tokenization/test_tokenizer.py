"""EventTokenizer: vocabularies, bins, time features, text, persistence and point-in-time behaviour."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pytest
import yaml

from foundation.data.schema import DataSchema
from foundation.tokenization import FORMAT_VERSION, EventTokenizer, TimeEncoder
from foundation.tokenization import tokenizer as tokenizer_module
from tests.conftest import make_schema as data_schema
from tests.tokenization.fixtures import (
    FIELDS,
    T0_MS,
    assert_tables_equal,
    customer_table,
    issuer_table,
    make_schema,
    sequences_from_events,
)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return customer_table()


@pytest.fixture(scope="module")
def tok(table) -> EventTokenizer:
    return EventTokenizer.fit([table, issuer_table()], make_schema(), progress=False, text_vocab_size=120)


def one_entity(columns: dict[str, pa.Array], entity_type: str = "customer") -> pa.Table:
    n = len(columns["event_time"])
    return sequences_from_events(entity_type, np.zeros(n, dtype=np.int64), columns)


def flat(encoded: pa.Table, column: str) -> np.ndarray:
    return np.asarray(encoded[column].combine_chunks().flatten().to_numpy(zero_copy_only=False))


def test_output_columns_and_types_follow_contract(tok, table):
    enc = tok.encode(table)
    expected = {
        "entity_type": pa.int64(), "entity_id": pa.string(), "length": pa.int32(),
        "event_time": pa.list_(pa.int64()), "time_gap_bin": pa.list_(pa.int32()),
        "time_gap": pa.list_(pa.float32()), "hour": pa.list_(pa.int32()), "dow": pa.list_(pa.int32()),
        "event_type": pa.list_(pa.int32()), "amount_bin": pa.list_(pa.int32()),
        "amount_value": pa.list_(pa.float32()), "mcc": pa.list_(pa.int32()),
        "descriptor_tokens": pa.list_(pa.list_(pa.int32())), "label_is_fraud": pa.list_(pa.float32()),
    }
    assert {f.name: f.type for f in enc.schema} == expected
    assert enc["entity_id"].to_pylist() == table["entity_id"].to_pylist()
    assert enc["length"].to_pylist() == table["length"].to_pylist()
    assert set(enc["entity_type"].to_pylist()) == {tok.entity_types.index("customer")}
    assert enc["event_time"].to_pylist()[0] == pa.compute.cast(
        table["event_time"].combine_chunks().flatten(), pa.int64()).to_pylist()[: table["length"][0].as_py()]


def test_field_specs_are_union_of_entity_types(tok):
    specs = {s["name"]: s for s in tok.field_specs()}
    assert specs["time"] == {"name": "time", "kind": "time", "num_bins": tok.time.num_bins}
    assert specs["event_type"] == {"name": "event_type", "kind": "categorical", "vocab_size": 6, "outcome": True}
    assert specs["amount"]["kind"] == "numeric" and specs["amount"]["num_bins"] == len(tok.encoders[1].edges) + 3
    assert specs["descriptor"]["kind"] == "text" and specs["descriptor"]["max_tokens"] == 8
    assert specs["agg_n_events"]["kind"] == "numeric" and specs["agg_amount_sum"]["kind"] == "numeric"
    issuer = tok.encode(issuer_table())
    assert "agg_n_events_bin" in issuer.column_names and "mcc" not in issuer.column_names
    assert set(issuer["entity_type"].to_pylist()) == {2}


def test_vocabulary_frequency_order_min_count_and_oov():
    times = pa.array(T0_MS + 1000 * np.arange(9), pa.timestamp("ms"))
    cols = {"event_time": times,
            "mcc": pa.array(["b", "a", "b", "c", "a", "c", "d", "b", None])}  # b:3, a:2, c:2, d:1
    schema = data_schema(fields={"mcc": {"type": "categorical", "min_count": 2}}, labels=())
    tok = EventTokenizer.fit([one_entity(cols)], schema, progress=False)
    assert tok.encoders[0].vocab == ["b", "a", "c"]  # by count, ties by value; d below min_count
    new = one_entity({"event_time": times[:5], "mcc": pa.array(["a", "d", "zzz", None, "b"])})
    assert flat(tok.encode(new), "mcc").tolist() == [3, 1, 1, 1, 2]
    # Without a per-field min_count the fit() default applies.
    schema = data_schema(fields={"mcc": {"type": "categorical"}}, labels=())
    assert EventTokenizer.fit([one_entity(cols)], schema, min_count=1, progress=False).encoders[0].vocab == \
        ["b", "a", "c", "d"]


def test_schema_read_from_yaml_fits_the_same_tokenizer(table, tok, tmp_path):
    """The dataset YAML (conf/data/<name>.yaml, read by DataSchema.from_yaml) fits the same tokenizer."""
    config = {"name": "tokens", "source": {"path": "events.parquet"}, "timestamp": "ts",
              "entities": {"customer": "card_id"}, "fields": FIELDS, "labels": {"is_fraud": "is_fraud"}}
    (tmp_path / "tokens.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    plain = DataSchema.from_yaml(tmp_path / "tokens.yaml")
    fitted = EventTokenizer.fit([table, issuer_table()], plain, progress=False, text_vocab_size=120)
    assert fitted.to_dict() == tok.to_dict()


def test_per_field_options_from_schema_extra(table):
    schema = make_schema(amount={"type": "numeric", "extra": {"num_bins": 4}},
                         descriptor={"type": "text", "max_tokens": 3})
    fitted = EventTokenizer.fit([table], schema, progress=False, text_vocab_size=120)
    specs = {s["name"]: s for s in fitted.field_specs()}
    assert specs["amount"]["num_bins"] == 4 + 2 and specs["descriptor"]["max_tokens"] == 3
    assert fitted.encode(table)["descriptor_tokens"].type == pa.list_(pa.list_(pa.int32()))
    assert {len(t) for t in fitted.encode(table)["descriptor_tokens"][0].as_py()} == {3}


def test_numeric_bins_monotone_null_and_standardised(tok, table):
    enc = tok.encode(table)
    amount = table["amount"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    bins, values = flat(enc, "amount_bin"), flat(enc, "amount_value")
    null = np.isnan(amount)
    assert null.any() and np.all(bins[null] == 1) and np.all(values[null] == 0.0)
    order = np.argsort(amount[~null])
    assert np.all(np.diff(bins[~null][order]) >= 0) and np.all(np.diff(values[~null][order]) >= 0)
    assert bins[~null].min() == 2 and bins[~null].max() == tok.field_specs()[2]["num_bins"] - 1
    assert abs(values[~null].mean()) < 1e-3 and abs(values[~null].std() - 1) < 1e-3
    # Each quantile bin holds a similar share of the fitted values.
    shares = np.bincount(bins[~null])[2:] / (~null).sum()
    assert shares.max() < 3 / 32


def test_unseen_extremes_and_inf_do_not_crash(tok):
    cols = {"event_time": pa.array(T0_MS + np.arange(4), pa.timestamp("ms")),
            "amount": pa.array([-1e9, 1e12, np.inf, 0.0])}
    enc = tok.encode(one_entity(cols))
    assert flat(enc, "amount_bin").tolist() == [2, tok.encoders[1].num_bins - 1, 1, 2]
    assert np.all(np.isfinite(flat(enc, "amount_value")))


def test_time_features_on_hand_made_events():
    # 2024-01-01 is a Monday. Gaps: first, 0.5 s, 10 s, 1 day, 200 days (beyond the last edge).
    ms = np.array([30 * 60_000, 30 * 60_000 + 500, 30 * 60_000 + 10_500, 86_400_000 + 30 * 60_000 + 10_500])
    ms = np.concatenate([ms, [ms[-1] + 200 * 86_400_000]]) + T0_MS
    sunday_late = T0_MS + 6 * 86_400_000 + 23 * 3_600_000 + 59 * 60_000
    table = sequences_from_events("customer", np.array([0, 0, 0, 0, 0, 1]), {
        "event_time": pa.array(np.concatenate([ms, [sunday_late]]), pa.timestamp("ms"))})
    enc = EventTokenizer(TimeEncoder(), [], []).encode(table)
    edges = TimeEncoder.log_edges()
    assert enc["hour"].to_pylist() == [[1, 1, 1, 1, 1], [24]]
    assert enc["dow"][0].as_py()[:4] == [1, 1, 1, 2] and enc["dow"][1].as_py() == [7]
    gap_bins = enc["time_gap_bin"].to_pylist()
    assert gap_bins[1] == [1]  # a first event has its own bin
    assert gap_bins[0][0] == 1 and gap_bins[0][1] == 2  # sub-second gap -> lowest gap bin
    assert gap_bins[0][2] == 2 + int(np.searchsorted(edges, 10.0, side="right"))
    assert gap_bins[0][3] == 2 + int(np.searchsorted(edges, 86_400.0, side="right"))
    assert gap_bins[0][4] == TimeEncoder().num_bins - 1
    assert gap_bins[0][1] < gap_bins[0][2] < gap_bins[0][3] < gap_bins[0][4]
    np.testing.assert_allclose(enc["time_gap"][0].as_py(), np.log1p([0, 0.5, 10, 86_400, 200 * 86_400]), rtol=1e-6)


def test_encoding_an_event_never_uses_later_events(tok, table):
    """A prefix of a sequence encodes to the prefix of the full encoding (point in time)."""
    full = tok.encode(table).slice(0, 1).to_pylist()[0]
    cut = 7
    prefix = table.slice(0, 1).to_pylist()[0]
    prefix = {k: (v[:cut] if isinstance(v, list) else v) for k, v in prefix.items()}
    prefix["length"] = cut
    short = tok.encode(pa.Table.from_pylist([prefix], schema=table.schema)).to_pylist()[0]
    assert short["length"] == cut
    for key, value in short.items():
        if isinstance(value, list):
            np.testing.assert_array_equal(np.asarray(value), np.asarray(full[key][:cut]), err_msg=key)


def test_text_tokens(tok):
    texts = ["AMZN MKTP US*2K4", "amzn mktp us*2k4", None, "", "shell oil 5744 " * 5, "never seen ÆØ"]
    cols = {"event_time": pa.array(T0_MS + np.arange(len(texts)), pa.timestamp("ms")),
            "descriptor": pa.array(texts)}
    tokens = tok.encode(one_entity(cols))["descriptor_tokens"][0].as_py()
    assert all(len(t) == 8 for t in tokens)
    assert tokens[0] == tokens[1]  # lowercased
    assert tokens[2] == [0] * 8 and tokens[3] == [0] * 8  # null / empty text is all padding
    assert all(t > 0 for t in tokens[4])  # long text truncated to max_tokens
    assert 1 in tokens[5]  # unseen characters -> [UNK]
    assert tokens[0][-1] == 0 and tokens[0][0] > 1


def test_save_load_round_trip_and_version_error(tok, table, tmp_path):
    tok.save_pretrained(tmp_path)
    loaded = EventTokenizer.from_pretrained(tmp_path)
    assert loaded.field_specs() == tok.field_specs()
    assert_tables_equal(loaded.encode(table), tok.encode(table))
    assert_tables_equal(loaded.encode(issuer_table()), tok.encode(issuer_table()))
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["format_version"] == FORMAT_VERSION
    config["format_version"] = FORMAT_VERSION + 1
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="format_version"):
        EventTokenizer.from_pretrained(tmp_path)


def test_fit_is_deterministic(table):
    a = EventTokenizer.fit([table], make_schema(), progress=False, text_vocab_size=120)
    b = EventTokenizer.fit([table], make_schema(), progress=False, text_vocab_size=120)
    assert a.to_dict() == b.to_dict()
    assert_tables_equal(a.encode(table), b.encode(table))


def test_chunked_and_sliced_inputs_encode_like_the_whole(tok, table, monkeypatch):
    whole = tok.encode(table)
    chunked = pa.concat_tables([table.slice(0, 5), table.slice(5)])
    assert_tables_equal(tok.encode(chunked), whole)
    monkeypatch.setattr(tokenizer_module, "MAX_EVENTS_PER_SLICE", 30)  # forces several slices
    assert_tables_equal(tok.encode(table), whole)


def test_timestamp_field_is_its_age_at_the_event():
    times = pa.array(T0_MS + 86_400_000 * np.arange(1, 5), pa.timestamp("ms"))
    opened = pa.array([T0_MS, T0_MS, None, T0_MS], pa.timestamp("ms"))
    schema = data_schema(fields={"opened": {"type": "timestamp"}}, labels=())
    table = one_entity({"event_time": times, "opened": opened})
    tok = EventTokenizer.fit([table], schema, progress=False)
    enc = tok.encode(table)
    bins = flat(enc, "opened_bin")
    assert bins[2] == 1 and bins[0] < bins[1] < bins[3]
    np.testing.assert_allclose(tok.encoders[0].mean, np.mean(np.log1p([86_400.0, 2 * 86_400, 4 * 86_400])))


def test_labels_pass_through_with_nan(tok, table):
    labels = table["is_fraud"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    encoded = flat(tok.encode(table), "label_is_fraud")
    assert encoded.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(encoded), np.isnan(labels))
    np.testing.assert_array_equal(encoded[~np.isnan(encoded)], labels[~np.isnan(labels)])


def test_bad_input_errors_name_the_problem(tok, table):
    with pytest.raises(ValueError, match="entity_type"):
        tok.encode(table.set_column(0, "entity_type", pa.array(["bank"] * table.num_rows)))
    with pytest.raises(ValueError, match="not seen when the tokenizer was fitted"):
        tok.encode(table.append_column("extra", table["mcc"]))
    backwards = one_entity({"event_time": pa.array([T0_MS + 5, T0_MS], pa.timestamp("ms"))})
    with pytest.raises(ValueError, match="not time-ordered"):
        tok.encode(backwards)
    with pytest.raises(ValueError, match="lacks required columns"):
        tok.encode(table.drop_columns(["length"]))
    wrong_length = table.set_column(2, "length", pa.array([1] * table.num_rows, pa.int32()))
    with pytest.raises(ValueError, match="'event_time': row 0"):
        tok.encode(wrong_length)
    schema = data_schema(fields={"mcc": {"type": "categorical"}}, labels=())  # a config refuses the typo
    bad_type = dataclasses.replace(schema, fields={"mcc": dataclasses.replace(schema.fields["mcc"], type="categorial")})
    with pytest.raises(ValueError, match="'mcc': type must be one of"):
        EventTokenizer.fit([table], bad_type, progress=False)


def test_categorical_ids_of_a_few_values_equal_the_arrow_path():
    """The dict lookup for a few values (the service's attempts) gives the ids of the pyarrow path."""
    from foundation.tokenization.encoders import FEW_VALUES, NULL_ID, CategoricalEncoder

    encoder = CategoricalEncoder("mcc", ["5411", "5999", "4829"])
    few = pa.array(["5999", None, "never-seen", "5411", ""], pa.string())
    many = pa.concat_arrays([few] * (FEW_VALUES // len(few) + 1))  # over FEW_VALUES: pyarrow's index_in
    assert len(many) > FEW_VALUES
    small, large = encoder.encode(few, np.zeros(len(few)))["mcc"], encoder.encode(many, np.zeros(len(many)))["mcc"]
    np.testing.assert_array_equal(small, [3, NULL_ID, NULL_ID, 2, NULL_ID])
    np.testing.assert_array_equal(large[: len(few)], small)
    assert small.dtype == large.dtype == np.int32
    # integer categories take the pyarrow path (cast to strings), whatever their number
    np.testing.assert_array_equal(CategoricalEncoder("x", ["7"]).encode(pa.array([7, 8]), np.zeros(2))["x"], [2, 1])
