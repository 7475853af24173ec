"""Embeddings parquet (entity_type, entity_id, as_of, embedding): schema, reload, per-event vs last, the
Python API on raw events, and the scripts/embed.py job."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from foundation.data.schema import DataValidationError
from foundation.embeddings import Embedder, embedding_schema, export_embeddings, read_embeddings
from foundation.pointintime import PointInTimeEncoder, PointInTimeStates
from tests.embeddings.world import raw_events


@pytest.fixture(scope="module")
def exports(world, tmp_path_factory):
    encoder = PointInTimeEncoder(world.run.model, world.run.tokenizer.field_specs(), 256, progress=False)
    states = PointInTimeStates(world.store, encoder)
    out = tmp_path_factory.mktemp("export")
    last = export_embeddings(states, out / "last", "last", chunk_entities=5)
    per_event = export_embeddings(states, out / "per_event", "per_event", chunk_entities=5)
    return last, per_event


def test_parquet_schema_and_reload(world, exports):
    last, per_event = exports
    hidden = world.run.model.config.hidden_size
    table = read_embeddings(last.out_dir)
    assert table.schema.equals(embedding_schema(hidden))
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), hidden)
    assert table.schema.field("as_of").type == pa.timestamp("ms")
    manifest = world.store.manifest.entity_types
    assert last.entities == {t: s.entities for t, s in manifest.items()}
    assert table.num_rows == sum(s.entities for s in manifest.values())
    assert pc.unique(table["entity_type"]).to_pylist() == list(manifest)  # schema order
    events = read_embeddings(per_event.out_dir, "customer")
    assert events.schema.equals(embedding_schema(hidden, per_event=True))
    assert events.num_rows == manifest["customer"].events
    assert last.entities_per_s > 0


def test_last_embedding_is_the_state_after_the_last_event(world, exports):
    last, per_event = exports
    for entity_type in ("customer", "merchant", "issuer"):
        final = read_embeddings(last.out_dir, entity_type)
        events = read_embeddings(per_event.out_dir, entity_type)
        # the last row of each entity in per_event mode (rows are time-ordered per entity)
        ids = events["entity_id"].to_numpy(zero_copy_only=False)
        is_last = np.r_[ids[1:] != ids[:-1], True]
        tail = events.filter(pa.array(is_last))
        assert tail["entity_id"].to_pylist() == final["entity_id"].to_pylist()
        assert tail["as_of"].equals(final["as_of"])
        np.testing.assert_allclose(np.stack(tail["embedding"].to_numpy(zero_copy_only=False)),
                                   np.stack(final["embedding"].to_numpy(zero_copy_only=False)), atol=2e-5)


def test_embedder_on_raw_events_matches_the_store_export(world, exports):
    last, _ = exports
    embedder = Embedder.from_pretrained(world.run_dir)
    frame = raw_events().drop_columns(["is_fraud", "approved"]).to_pandas()  # labels may be left out
    table = embedder.embed(frame)
    expected = read_embeddings(last.out_dir)
    assert table["entity_id"].to_pylist() == expected["entity_id"].to_pylist()
    np.testing.assert_allclose(np.stack(table["embedding"].to_numpy(zero_copy_only=False)),
                               np.stack(expected["embedding"].to_numpy(zero_copy_only=False)), atol=2e-5)
    per_event = embedder.embed(raw_events().slice(0, 200), mode="per_event", entity_types=["customer"])
    assert set(per_event["entity_type"].to_pylist()) == {"customer"}
    assert per_event.num_rows == 200 and "event_id" in per_event.column_names


def test_embedder_rejects_bad_input_naming_the_column(world):
    embedder = Embedder.from_pretrained(world.run_dir / "hf", data=world.run.config.data)
    bad = raw_events().slice(0, 20)
    bad = bad.set_column(bad.schema.get_field_index("amount"), "amount", pa.array([-5.0] * 20))
    with pytest.raises(DataValidationError, match="amount"):
        embedder.embed(bad)
    with pytest.raises(ValueError, match="mode"):
        embedder.embed(raw_events().slice(0, 5), mode="mean")
    with pytest.raises(TypeError, match="pyarrow Table or a pandas DataFrame"):
        embedder.embed([1, 2, 3])


def test_embed_job_writes_the_folder(world, tmp_path):
    from hydra import compose, initialize_config_dir

    from foundation.embeddings import embed
    from tests.embeddings.world import REPO

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("embed", overrides=[f"checkpoint={world.run_dir}", f"out_dir={tmp_path / 'out'}",
                                          f"paths.root_dir={tmp_path}", "entity_types=[merchant]"])
    out = embed(cfg)
    assert out == tmp_path / "out"
    table = read_embeddings(out)
    assert set(table["entity_type"].to_pylist()) == {"merchant"}
    assert table.num_rows == world.store.manifest.entity_types["merchant"].entities
