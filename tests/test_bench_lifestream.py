"""The pytorch-lifestream side-by-side harness (benchmarks/lifestream).

Fast tests cover the shard -> ptls feature mapping and the harness plumbing in our environment. The slow
ones train ptls CoLES for a few steps in the isolated environment (`bash benchmarks/lifestream/setup_env.sh`)
and are skipped, saying so, when it is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from benchmarks.lifestream.fixture import LABELS, TEXT_FIELDS, make_sequence_table, write_sequence_fixture
from benchmarks.lifestream.harness import (
    LifestreamEnvMissing,
    columns_from_schema,
    lifestream_python,
    run_coles_command,
    run_lifestream_benchmark,
)
from benchmarks.lifestream.shard_features import OOV_ID, FeatureEncoder, infer_columns, read_sequences
from tests.conftest import make_schema

CATEGORICAL = ["event_type", "mcc", "channel", "merchant_country", "decline_code"]


def _env_or_skip() -> None:
    try:
        lifestream_python()
    except LifestreamEnvMissing as err:
        pytest.skip(f"pytorch-lifestream environment missing ({err})")


def _small_fixture(path, seed=0):
    return write_sequence_fixture(path, n_customers=24, mean_events=14, seed=seed, entities_per_shard=10)


# --- fast: feature mapping and plumbing (our environment) ------------------------------------------------


def test_infer_columns_keeps_labels_and_text_out():
    schema = make_sequence_table(5, 4).schema
    categorical, numeric = infer_columns(schema, labels=LABELS, exclude=TEXT_FIELDS)
    assert categorical == CATEGORICAL
    assert numeric == ["amount"]
    # Without naming the labels they would look like numeric features: the reason --labels is required.
    assert "is_fraud" in infer_columns(schema, labels=[])[1]


def test_read_sequences_flattens_in_shard_order(tmp_path):
    seq_dir = _small_fixture(tmp_path)
    table = pq.read_table(seq_dir / "customer")
    seqs = read_sequences(seq_dir, CATEGORICAL, ["amount"])
    assert list(seqs.entity_ids) == table["entity_id"].to_pylist()
    assert np.array_equal(seqs.lengths, table["length"].to_numpy())
    assert seqs.num_events == int(pc.sum(table["length"]).as_py())
    assert np.array_equal(seqs.columns["amount"], pc.list_flatten(table["amount"]).to_numpy())
    assert list(seqs.event_ids) == pc.list_flatten(table["event_id"]).to_pylist()


def test_feature_encoder_maps_unseen_and_null_to_oov_and_gaps_stay_inside_entities(tmp_path):
    seq_dir = _small_fixture(tmp_path)
    seqs = read_sequences(seq_dir, CATEGORICAL, ["amount"])
    enc = FeatureEncoder.fit(seqs, CATEGORICAL, ["amount"], min_count=1)
    seqs.columns["mcc"] = pa.array(["never-seen"] + seqs.columns["mcc"].to_pylist()[1:])
    feats = enc.transform(seqs)
    assert feats["mcc"][0] == OOV_ID and feats["mcc"][1:].min() >= 2
    declines = pc.is_null(seqs.columns["decline_code"]).to_numpy(zero_copy_only=False)
    assert (feats["decline_code"][declines] == OOV_ID).all() and (feats["decline_code"][~declines] >= 2).all()
    assert (feats["time_gap"][seqs.is_entity_start] == 0).all()
    assert (feats["time_gap"][~seqs.is_entity_start] >= 0).all()
    assert feats["hour"].min() >= 1 and feats["hour"].max() <= 24 and set(np.unique(feats["dow"])) <= set(range(1, 8))
    assert enc.cardinalities()["mcc"] == 2 + len(enc.vocabs["mcc"])
    enc.save(tmp_path / "features.json")
    assert FeatureEncoder.load(tmp_path / "features.json") == enc


def test_feature_encoder_min_count_drops_rare_values(tmp_path):
    seqs = read_sequences(_small_fixture(tmp_path), CATEGORICAL, [])
    counts = dict(zip(*np.unique(seqs.columns["mcc"].to_numpy(zero_copy_only=False), return_counts=True)))
    enc = FeatureEncoder.fit(seqs, CATEGORICAL, [], min_count=int(np.median(list(counts.values()))))
    kept = set(enc.vocabs["mcc"])
    assert kept and kept < set(counts)
    assert all(counts[v] >= int(np.median(list(counts.values()))) for v in kept)


def test_read_sequences_names_bad_columns(tmp_path):
    table = make_sequence_table(6, 5)
    (tmp_path / "customer").mkdir()
    pq.write_table(table, tmp_path / "customer" / "part-00000.parquet")
    with pytest.raises(KeyError, match="'nope'"):
        read_sequences(tmp_path, ["nope"], [])
    with pytest.raises(TypeError, match="'amount'"):
        read_sequences(tmp_path, ["amount"], [])
    times = pc.list_flatten(table["event_time"]).to_numpy()[::-1].copy()  # reversed: out of time order
    offsets = table["event_time"].chunk(0).offsets
    bad = table.set_column(table.schema.get_field_index("event_time"), "event_time",
                           pa.ListArray.from_arrays(offsets, pa.array(times, pa.timestamp("ms"))))
    pq.write_table(bad, tmp_path / "customer" / "part-00000.parquet")
    with pytest.raises(ValueError, match="'event_time'.*time-ordered"):
        read_sequences(tmp_path, ["mcc"], [])
    with pytest.raises(FileNotFoundError, match="merchant"):
        read_sequences(tmp_path, ["mcc"], [], entity_type="merchant")


def test_missing_environment_is_a_clear_error(tmp_path):
    with pytest.raises(LifestreamEnvMissing, match="setup_env.sh"):
        lifestream_python(tmp_path / "no-such-venv" / "bin" / "python")


def test_schema_columns_and_command_line(tmp_path):
    schema = make_schema(fields={"mcc": {"type": "categorical"}, "amount": {"type": "numeric"},
                                 "descriptor": {"type": "text"}}, labels=("is_fraud",))
    cols = columns_from_schema(schema)
    assert cols == {"categorical": ["mcc"], "numeric": ["amount"], "labels": ["is_fraud"]}
    cmd = run_coles_command(tmp_path / "py", "rnn", "seq", 64, 10, tmp_path / "o",
                            {"categorical": cols["categorical"], "labels": ["a", "b"], "no_pit": True,
                             "pit_from": None, "split_count": 5})
    assert cmd[cmd.index("--hidden") + 1] == "64" and cmd[cmd.index("--labels") + 1] == "a,b"
    assert "--no-pit" in cmd and "--pit-from" not in cmd and cmd[cmd.index("--split-count") + 1] == "5"


def test_synthetic_schema_gives_features_without_labels_or_text():
    from foundation.data.schema import DataSchema

    schema = DataSchema.from_yaml(Path(__file__).resolve().parents[1] / "conf" / "data" / "synthetic.yaml",
                                  root={"paths": {"root_dir": ".", "data_dir": "data"}})
    cols = columns_from_schema(schema)
    text = [n for n, f in schema.fields.items() if f.type == "text"]
    assert text and not set(text) & set(cols["categorical"] + cols["numeric"])
    assert set(cols["labels"]) == set(schema.labels) and not set(cols["labels"]) & set(cols["numeric"])
    assert "amount" in cols["numeric"] and "mcc" in cols["categorical"]


@pytest.mark.slow
def test_failed_run_reports_the_cause(tmp_path):
    # Our own interpreter has no ptls: run_coles.py fails at import (after torch: a few seconds), and the
    # error carries the end of its log.
    seq_dir = _small_fixture(tmp_path / "seq")
    with pytest.raises(RuntimeError, match="(?s)exit 1.*No module named 'ptls'"):
        run_lifestream_benchmark(seq_dir, hidden=8, steps=2, out_dir=tmp_path / "out", encoders=["rnn"],
                                 python=sys.executable, labels=[], timeout=120)
    assert (tmp_path / "out" / "rnn" / "run.log").exists()


# --- slow: ptls CoLES in the isolated environment -----------------------------------------------------------

TINY = dict(batch_size=8, max_len=16, warmup=1, min_len=4, layers=2, heads=2, emb_dim=4, embed_chunk_events=97,
            labels=list(LABELS), exclude=list(TEXT_FIELDS))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    _env_or_skip()
    root = tmp_path_factory.mktemp("lifestream")
    seq_dir = _small_fixture(root / "seq")
    results = run_lifestream_benchmark(seq_dir, hidden=32, steps=4, out_dir=root / "out", timeout=600, **TINY)
    return seq_dir, root, results


@pytest.mark.slow
def test_benchmark_trains_both_encoders_and_writes_embeddings(trained):
    seq_dir, _, results = trained
    table = pq.read_table(seq_dir / "customer")
    starts = np.cumsum(np.concatenate([[0], table["length"].to_numpy()[:-1]]))
    for encoder in ("rnn", "transformer"):
        r = results[encoder]
        assert (r["encoder"], r["hidden"], r["steps"], r["timed_steps"]) == (encoder, 32, 4, 3)
        assert r["events_per_s"] > 0 and r["events_per_cpu_s"] > 0 and r["params"] > 0 and r["wall_s"] > 0
        assert r["numeric"] == ["amount"] and "is_fraud" not in r["numeric"] and "merchant_descriptor" not in r["categorical"]
        ent = pq.read_table(r["entity_embeddings"])
        assert ent["entity_id"].to_pylist() == table["entity_id"].to_pylist()
        assert ent.schema.field("embedding").type == pa.list_(pa.float32(), 32)
        pit = pq.read_table(r["pit_embeddings"])
        assert pit["event_id"].to_pylist() == pc.list_flatten(table["event_id"]).to_pylist()
        emb = np.stack(pit["embedding"].to_numpy(zero_copy_only=False))
        first = np.zeros(len(pit), dtype=bool)
        first[starts] = True
        assert np.array_equal(pit["has_history"].to_numpy() == 0, first)
        assert (emb[first] == 0).all() and (np.abs(emb[~first]).sum(axis=1) > 0).all()
        # A customer's last point-in-time state differs from its state after all events (one more event in).
        assert not np.allclose(np.stack(ent["embedding"].to_numpy(zero_copy_only=False))[0], emb[starts[1] - 1])


def _change_future(table: pa.Table, cut: int) -> pa.Table:
    """Same customers, but every event at position >= cut gets another amount and merchant category."""
    table = table.combine_chunks()
    offsets = table["amount"].chunk(0).offsets
    lengths = table["length"].to_numpy()
    position = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(np.concatenate([[0], lengths[:-1]])), lengths)
    future = position >= cut
    amount = pc.list_flatten(table["amount"]).to_numpy().copy()
    amount[future] *= 7.0
    mcc = np.asarray(pc.list_flatten(table["mcc"]).to_pylist(), dtype=object)
    mcc[future] = "7995"
    table = table.set_column(table.schema.get_field_index("amount"), "amount",
                             pa.ListArray.from_arrays(offsets, pa.array(amount)))
    return table.set_column(table.schema.get_field_index("mcc"), "mcc",
                            pa.ListArray.from_arrays(offsets, pa.array(mcc, pa.string())))


@pytest.mark.slow
def test_point_in_time_embeddings_never_see_the_event_or_later_ones(trained):
    seq_dir, root, results = trained
    cut = 5
    changed_dir = root / "changed"
    (changed_dir / "customer").mkdir(parents=True)
    pq.write_table(_change_future(pq.read_table(seq_dir / "customer"), cut), changed_dir / "customer" / "part-00000.parquet")
    lengths = pq.read_table(seq_dir / "customer")["length"].to_numpy()
    position = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(np.concatenate([[0], lengths[:-1]])), lengths)
    for encoder in ("rnn", "transformer"):
        again = run_lifestream_benchmark(changed_dir, hidden=32, steps=0, out_dir=root / "embed-only",
                                         encoders=[encoder], init_from=str(root / "out" / encoder), timeout=600,
                                         **TINY)[encoder]
        before = np.stack(pq.read_table(results[encoder]["pit_embeddings"])["embedding"].to_numpy(zero_copy_only=False))
        after = np.stack(pq.read_table(again["pit_embeddings"])["embedding"].to_numpy(zero_copy_only=False))
        # Events up to and including the first changed one only see unchanged history...
        np.testing.assert_allclose(after[position <= cut], before[position <= cut], atol=1e-5)
        # ...and the ones after it do see the change (so the comparison above can fail).
        assert np.abs(after[position > cut] - before[position > cut]).max() > 1e-3

