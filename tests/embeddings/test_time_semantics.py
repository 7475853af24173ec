"""What a `per_event` embedding row is: the entity's state right after its event (the event included), and
the export's manifest.json names the checkpoint that computed it."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from foundation.embeddings import Embedder, embed, read_embeddings
from tests.embeddings.world import REPO, raw_events


def vectors(table: pa.Table) -> np.ndarray:
    return np.stack(table["embedding"].to_numpy(zero_copy_only=False))


@pytest.fixture(scope="module")
def one_card():
    """The raw events of the busiest card, in time order (ties by event id), as the sequences order them."""
    events = raw_events()
    card = pc.mode(events["card_id"])[0]["mode"].as_py()
    mine = events.filter(pc.equal(events["card_id"], card))
    return mine.sort_by([("ts", "ascending"), ("event_id", "ascending")])


def test_per_event_row_is_the_state_right_after_its_event(world, one_card):
    embedder = Embedder.from_pretrained(world.run_dir)
    rows = embedder.embed(one_card, mode="per_event", entity_types=["customer"])
    assert rows["event_id"].to_pylist() == [str(i) for i in one_card["event_id"].to_pylist()]
    assert rows["as_of"].to_pylist() == one_card["ts"].to_pylist()
    k = 5
    # the history up to and including event k, embedded as "the state after the last event"
    through_k = embedder.embed(one_card.slice(0, k + 1), mode="last", entity_types=["customer"])
    before_k = embedder.embed(one_card.slice(0, k), mode="last", entity_types=["customer"])
    np.testing.assert_allclose(vectors(rows)[k], vectors(through_k)[0], atol=2e-5)
    np.testing.assert_allclose(vectors(rows)[k - 1], vectors(before_k)[0], atol=2e-5)
    # so the state strictly before event k is the previous row, not row k
    assert not np.allclose(vectors(rows)[k], vectors(before_k)[0], atol=1e-3)


def test_manifest_records_the_checkpoint(world, tmp_path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("embed", overrides=[f"checkpoint={world.run_dir}", f"out_dir={tmp_path / 'out'}",
                                          f"paths.root_dir={tmp_path}", "entity_types=[issuer]"])
    out = embed(cfg)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["checkpoint"] == {"hf_dir": str(world.run.hf_dir.resolve()), "digest": world.run.digest()}
    assert read_embeddings(out).num_rows == world.store.manifest.entity_types["issuer"].entities
