"""A small customer sequence-shard fixture (docs/architecture.md section 3) to develop and test against.

Customers have a home country, favourite merchant categories and a spending level; some are compromised
at a random moment, after which part of their charges are fraudulent (foreign, e-commerce, larger, odd
categories), so the point-in-time history carries signal for a fraud head. Labels (`is_fraud`,
`approved`) are list<double> like numeric fields; `merchant_descriptor` is a text field.

    python -m benchmarks.lifestream.fixture --out /tmp/lifestream_fixture --customers 300
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00
MCCS = np.array(["5411", "5812", "5541", "5999", "4829", "7995", "5732", "5912", "4121", "5311"])
COUNTRIES = np.array(["US", "GB", "DE", "FR", "BR", "NG", "IN"])
CHANNELS = np.array(["card_present", "ecommerce", "recurring"])
EVENT_TYPES = np.array(["charge", "decline", "refund"])
DESCRIPTORS = np.array(["AMZN MKTP US*2K4", "SHELL OIL 5744", "UBER TRIP", "STARBUCKS 0042", "WALMART 3391"])
LABELS = ("is_fraud", "approved")
TEXT_FIELDS = ("merchant_descriptor",)


def make_sequence_table(n_customers: int = 300, mean_events: int = 60, seed: int = 0) -> pa.Table:
    """One row per customer, list columns time-ordered by (event_time, event_id).

    Args:
        n_customers: entities.
        mean_events: mean events per customer (geometric-ish spread, at least 2).
        seed: numpy seed; the table is a pure function of the arguments.
    Returns:
        pa.Table with entity_type, entity_id, length, event_id, event_time, event_type, amount, mcc,
        channel, merchant_country, decline_code, merchant_descriptor, is_fraud, approved.
    """
    rng = np.random.default_rng(seed)
    lengths = np.maximum(2, rng.poisson(mean_events, n_customers) * rng.uniform(0.3, 1.7, n_customers)).astype(np.int64)
    n = int(lengths.sum())
    owner = np.repeat(np.arange(n_customers), lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)])

    # Times: per-customer exponential gaps from a random start; event ids break ties in time order.
    gaps = rng.exponential(6 * 3_600_000, n).astype(np.int64) // 60_000 * 60_000  # minute grid -> real ties
    start = rng.integers(0, 30 * 86_400_000, n_customers)
    cum = np.cumsum(gaps)
    time_ms = START_MS + start[owner] + cum - (cum - gaps)[offsets[:-1]][owner]

    home = rng.integers(0, 3, n_customers)  # mostly US/GB/DE
    fav = rng.integers(0, 5, (n_customers, 2))
    level = rng.lognormal(3.0, 0.6, n_customers)
    pos_in_seq = np.arange(n) - offsets[:-1][owner]
    compromised_at = np.where(rng.random(n_customers) < 0.25, (lengths * rng.uniform(0.4, 0.9, n_customers)).astype(np.int64),
                              np.iinfo(np.int64).max)
    fraud = (pos_in_seq >= compromised_at[owner]) & (rng.random(n) < 0.5)

    mcc_idx = np.where(rng.random(n) < 0.7, fav[owner, rng.integers(0, 2, n)], rng.integers(0, len(MCCS), n))
    mcc_idx = np.where(fraud, rng.choice([5, 6, 4], n), mcc_idx)
    country = np.where(fraud | (rng.random(n) < 0.05), rng.integers(3, len(COUNTRIES), n), home[owner])
    channel = np.where(fraud, 1, rng.choice(3, n, p=[0.6, 0.3, 0.1]))
    amount = np.round(level[owner] * rng.lognormal(0.0, 0.5, n) * np.where(fraud, 4.0, 1.0), 2)
    etype = rng.choice(3, n, p=[0.88, 0.08, 0.04])
    etype = np.where(fraud & (etype == 2), 0, etype)
    declined = etype == 1
    decline_code = np.where(declined, np.where(fraud, "59", rng.choice(["05", "51"], n)), None)

    is_fraud = np.where(etype == 2, np.nan, fraud.astype(np.float64))
    approved = np.where(etype == 2, np.nan, (~declined).astype(np.float64))
    event_id = np.arange(n)  # ascending in time inside each customer: a valid (event_time, event_id) order

    def lists(values: pa.Array) -> pa.ListArray:
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)

    return pa.table({
        "entity_type": pa.array(["customer"] * n_customers),
        "entity_id": pa.array([f"c{i:05d}" for i in range(n_customers)]),
        "length": pa.array(lengths, pa.int32()),
        "event_id": lists(pa.array(event_id.astype(str))),
        "event_time": lists(pa.array(time_ms, pa.timestamp("ms"))),
        "event_type": lists(pa.array(EVENT_TYPES[etype])),
        "amount": lists(pa.array(amount, pa.float64())),
        "mcc": lists(pa.array(MCCS[mcc_idx])),
        "channel": lists(pa.array(CHANNELS[channel])),
        "merchant_country": lists(pa.array(COUNTRIES[country])),
        "decline_code": lists(pa.array(decline_code, pa.string())),
        "merchant_descriptor": lists(pa.array(DESCRIPTORS[rng.integers(0, len(DESCRIPTORS), n)])),
        "is_fraud": lists(pa.array(is_fraud, pa.float64(), from_pandas=True)),
        "approved": lists(pa.array(approved, pa.float64(), from_pandas=True)),
    })


def write_sequence_fixture(out_dir: str | os.PathLike, n_customers: int = 300, mean_events: int = 60,
                           seed: int = 0, entities_per_shard: int = 128) -> Path:
    """Write `<out_dir>/customer/part-00000.parquet, ...` (contiguous entity ranges, like the real shards).

    Returns:
        out_dir as a Path (the `seq_dir` to hand to the benchmark).
    """
    table = make_sequence_table(n_customers, mean_events, seed)
    folder = Path(out_dir) / "customer"
    folder.mkdir(parents=True, exist_ok=True)
    for shard, start in enumerate(range(0, table.num_rows, entities_per_shard)):
        pq.write_table(table.slice(start, entities_per_shard), folder / f"part-{shard:05d}.parquet")
    return Path(out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--mean-events", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = write_sequence_fixture(args.out, args.customers, args.mean_events, args.seed)
    print(path)


if __name__ == "__main__":
    main()
