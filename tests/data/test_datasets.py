"""Loading sequence shards: HF datasets (memory-mapped, same rows/values/types) and shard streaming."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from foundation.data.datasets import iter_sequence_tables, load_sequence_dataset
from foundation.data.sequences import HF_CACHE, build_sequences
from tests.data.test_sequences import canonical_table, read_type, tiny_schema


@pytest.fixture
def seq_dir(tmp_path):
    build_sequences(canonical_table(), tiny_schema(), tmp_path, entities_per_shard=4)
    return tmp_path


def test_hf_dataset_has_the_rows_values_and_types_of_the_shards(seq_dir):
    expected = pa.concat_tables([read_type(seq_dir, "customer"), read_type(seq_dir, "merchant")])
    ds = load_sequence_dataset(seq_dir, ["customer", "merchant"])
    assert len(ds) == expected.num_rows
    assert ds.data.table.schema.types == expected.schema.types
    assert ds.data.table.to_pylist() == expected.to_pylist()
    assert ds[0]["entity_type"] == "customer" and ds[-1]["entity_type"] == "merchant"

    issuer = load_sequence_dataset(seq_dir, ["issuer"])
    assert issuer.data.table.to_pylist() == read_type(seq_dir, "issuer").to_pylist()


def test_second_load_memory_maps_the_cache_and_a_rebuild_clears_it(seq_dir):
    first = load_sequence_dataset(seq_dir, ["customer"])
    cache = [f["filename"] for f in first.cache_files]
    assert cache and all(f.startswith(str(seq_dir / HF_CACHE)) for f in cache)
    second = load_sequence_dataset(seq_dir, ["customer"])
    assert [f["filename"] for f in second.cache_files] == cache
    build_sequences(canonical_table(seed=5), tiny_schema(), seq_dir, entities_per_shard=4)
    assert not (seq_dir / HF_CACHE).exists()
    assert load_sequence_dataset(seq_dir, ["customer"]).data.table.equals(read_type(seq_dir, "customer"))


def test_aggregate_and_event_types_are_not_mixed(seq_dir):
    with pytest.raises(ValueError, match="different columns"):
        load_sequence_dataset(seq_dir)
    with pytest.raises(ValueError, match="no entity type 'card'"):
        load_sequence_dataset(seq_dir, ["card"])


def test_iter_sequence_tables_streams_each_shard_in_batches(seq_dir):
    batches = list(iter_sequence_tables(seq_dir, "customer", batch_size=3))
    shard_rows = [pq.read_metadata(p).num_rows for p in sorted((seq_dir / "customer").glob("part-*.parquet"))]
    # Shards of 4 entities in batches of 3: 3 + 1 per shard, never across a shard boundary.
    assert [b.num_rows for b in batches] == [n for rows in shard_rows for n in (min(rows, 3), rows - 3) if n > 0]
    assert pa.concat_tables(batches).equals(read_type(seq_dir, "customer"))
