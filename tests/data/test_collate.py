"""EventCollator and per_event_windows: the padded batch contract."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
import torch

from foundation.data.collate import EventCollator, per_event_windows
from foundation.tokenization import EventTokenizer
from tests.tokenization.fixtures import customer_table, issuer_table, make_schema


@pytest.fixture(scope="module")
def tok() -> EventTokenizer:
    return EventTokenizer.fit([customer_table(), issuer_table()], make_schema(), progress=False,
                              text_vocab_size=120)


@pytest.fixture(scope="module")
def encoded(tok) -> pa.Table:
    return tok.encode(customer_table())


def rows_of(encoded: pa.Table) -> list[dict]:
    return encoded.to_pylist()


def sequence(encoded: pa.Table, row: int, column: str) -> np.ndarray:
    return np.asarray(encoded[column][row].as_py())


EXPECTED = {
    "entity_type": ((), torch.long), "lengths": ((), torch.long), "entity_index": ((), torch.long),
    "attention_mask": (("T",), torch.bool), "event_time": (("T",), torch.long),
    "time_gap_bin": (("T",), torch.long), "hour": (("T",), torch.long), "dow": (("T",), torch.long),
    "time_gap": (("T",), torch.float32),
    "event_type": (("T",), torch.long), "mcc": (("T",), torch.long),
    "amount_bin": (("T",), torch.long), "amount_value": (("T",), torch.float32),
    "agg_n_events_bin": (("T",), torch.long), "agg_n_events_value": (("T",), torch.float32),
    "agg_amount_sum_bin": (("T",), torch.long), "agg_amount_sum_value": (("T",), torch.float32),
    "descriptor_tokens": (("T", "K"), torch.long), "label_is_fraud": (("T",), torch.float32),
}


def test_batch_keys_shapes_dtypes_and_masks(tok, encoded):
    max_len = 16
    batch = EventCollator(tok.field_specs(), max_len, window="last", label_names=["is_fraud"])(encoded.slice(0, 5))
    lengths = np.minimum(encoded["length"].to_numpy()[:5], max_len)
    T = int(lengths.max())
    assert set(batch) == set(EXPECTED)
    for key, (dims, dtype) in EXPECTED.items():
        shape = (5,) + tuple({"T": T, "K": 8}[d] for d in dims)
        assert batch[key].shape == shape and batch[key].dtype == dtype, key
    assert batch["lengths"].tolist() == lengths.tolist()
    mask = batch["attention_mask"]
    assert mask.sum(1).tolist() == lengths.tolist() and mask[:, 0].all()  # right padding
    for key in ("event_time", "hour", "dow", "time_gap_bin", "mcc", "amount_bin", "descriptor_tokens"):
        assert (batch[key][~mask] == 0).all(), key
        assert (batch[key][mask] != 0).all() or key == "descriptor_tokens", key  # real events never use 0
    assert torch.isnan(batch["label_is_fraud"][~mask]).all()
    # agg_* fields are absent from customer rows: all padding, so every batch has the same keys.
    assert (batch["agg_n_events_bin"] == 0).all() and (batch["agg_n_events_value"] == 0).all()
    assert batch["entity_index"].tolist() == list(range(5))


def test_pad_missing_false_drops_absent_fields(tok, encoded):
    batch = EventCollator(tok.field_specs(), 8, window="last", pad_missing=False)(encoded.slice(0, 2))
    assert "agg_n_events_bin" not in batch and "mcc" in batch and "label_is_fraud" not in batch


def test_last_window_is_the_tail_of_the_sequence(tok, encoded):
    max_len = 10
    batch = EventCollator(tok.field_specs(), max_len, window="last", label_names=["is_fraud"])(encoded)
    for row in range(encoded.num_rows):
        n = int(batch["lengths"][row])
        for key in ("event_time", "mcc", "amount_value", "time_gap", "descriptor_tokens", "label_is_fraud"):
            np.testing.assert_array_equal(batch[key][row, :n].numpy(), sequence(encoded, row, key)[-max_len:],
                                          err_msg=key)


def test_list_of_dicts_and_dict_of_columns_match_arrow(tok, encoded):
    collate = EventCollator(tok.field_specs(), 12, window="last", label_names=["is_fraud"])
    from_arrow = collate(encoded.slice(2, 4))
    from_rows = collate(rows_of(encoded.slice(2, 4)))
    from_columns = collate(encoded.slice(2, 4).to_pydict())
    for key in from_arrow:
        torch.testing.assert_close(from_rows[key], from_arrow[key], equal_nan=True, rtol=0, atol=0)
        torch.testing.assert_close(from_columns[key], from_arrow[key], equal_nan=True, rtol=0, atol=0)


def test_random_window_deterministic_under_seed_and_contiguous(tok, encoded):
    specs = tok.field_specs()
    a = EventCollator(specs, 6, seed=3)(encoded)
    b = EventCollator(specs, 6, seed=3)(encoded)
    c = EventCollator(specs, 6, seed=4)(encoded)
    assert torch.equal(a["event_time"], b["event_time"])
    assert not torch.equal(a["event_time"], c["event_time"])
    for row in range(encoded.num_rows):
        full = sequence(encoded, row, "event_time")
        n = int(a["lengths"][row])
        assert n == min(6, len(full))
        start = int(np.flatnonzero(full == int(a["event_time"][row, 0]))[0])
        np.testing.assert_array_equal(a["event_time"][row, :n].numpy(), full[start:start + n])


def test_dataloader_workers_draw_different_windows(tok, encoded, monkeypatch):
    """Each worker holds a copy of the collator: its draws must depend on the worker's torch seed."""
    collate = EventCollator(tok.field_specs(), 3, seed=0)

    def in_worker(worker_id: int, worker_seed: int) -> torch.Tensor:
        info = SimpleNamespace(id=worker_id, seed=worker_seed)
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: info)
        return copy.deepcopy(collate)(encoded)["event_time"]

    assert torch.equal(in_worker(0, 100), in_worker(0, 100))
    assert not torch.equal(in_worker(0, 100), in_worker(1, 101))
    assert not torch.equal(in_worker(0, 100), in_worker(0, 200))  # next epoch, new base seed


def test_views_share_entity_index_and_are_sub_sequences(tok, encoded):
    B, max_len, min_len = 6, 9, 3
    batch = EventCollator(tok.field_specs(), max_len, views=2, min_len=min_len, seed=0)(encoded.slice(0, B))
    assert batch["entity_index"].tolist() == list(range(B)) * 2
    assert torch.equal(batch["entity_type"][:B], batch["entity_type"][B:])
    lengths = batch["lengths"].numpy()
    full_lengths = encoded["length"].to_numpy()[:B]
    assert np.all(lengths >= np.minimum(min_len, np.tile(full_lengths, 2)))
    assert np.all(lengths <= np.minimum(max_len, np.tile(full_lengths, 2)))
    for i in range(2 * B):
        full = sequence(encoded, i % B, "event_time")
        view = batch["event_time"][i, : lengths[i]].numpy()
        start = int(np.flatnonzero(full == view[0])[0])
        np.testing.assert_array_equal(view, full[start:start + lengths[i]])


def test_per_event_windows_end_at_each_requested_event(tok, encoded):
    max_len = 5
    positions, rows = np.array([0, 3, 11]), np.array([1, 1, 2])
    batch = per_event_windows(encoded, tok.field_specs(), max_len, positions, rows, label_names=["is_fraud"])
    assert batch["lengths"].tolist() == [1, 4, 5] and batch["entity_index"].tolist() == [1, 1, 2]
    for j, (p, r) in enumerate(zip(positions, rows)):
        n = int(batch["lengths"][j])
        expected = sequence(encoded, r, "mcc")[max(0, p - max_len + 1): p + 1]
        np.testing.assert_array_equal(batch["mcc"][j, :n].numpy(), expected)
    every = per_event_windows(encoded.slice(0, 2), tok.field_specs(), max_len)
    n_events = int(encoded["length"].to_numpy()[:2].sum())
    assert every["lengths"].shape == (n_events,)
    last = every["event_time"][torch.arange(n_events), every["lengths"] - 1]
    expected_times = np.concatenate([sequence(encoded, 0, "event_time"), sequence(encoded, 1, "event_time")])
    np.testing.assert_array_equal(last.numpy(), expected_times)


def test_collate_from_hf_dataset_rows(tok, encoded):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset(encoded.slice(0, 4))
    collate = EventCollator(tok.field_specs(), 7, window="last")
    reference = collate(encoded.slice(0, 4))
    for batch in (collate([ds[i] for i in range(4)]), collate(ds.with_format("arrow")[0:4]),
                  collate([r for r in ds.with_format("numpy")])):
        for key in reference:
            torch.testing.assert_close(batch[key], reference[key], rtol=0, atol=0)


def test_bad_arguments_raise(tok, encoded):
    specs = tok.field_specs()
    with pytest.raises(ValueError, match="window"):
        EventCollator(specs, 8, window="first")
    with pytest.raises(ValueError, match="views"):
        EventCollator(specs, 8, window="last", views=2)
    with pytest.raises(ValueError, match="min_len"):
        EventCollator(specs, 8, min_len=9)
    with pytest.raises(ValueError, match="outside row"):
        per_event_windows(encoded, specs, 4, positions=[1000], rows=[0])
    with pytest.raises(ValueError, match="rows is required"):
        per_event_windows(encoded, specs, 4, positions=[0])
    with pytest.raises(ValueError, match="'label_nope' is not in the batch"):
        EventCollator(specs, 8, label_names=["nope"])(encoded.slice(0, 1))
