"""The planted fraud patterns, each measured in a world where it is the only source of fraud, and the
`fraud_pattern` label. Replay and dormant reactivation are the patterns counts barely see.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from foundation.data.synthetic import SyntheticConfig, build_world, write_synthetic
from tests.data.test_synthetic import DAY, MINUTE, PATTERNS_OFF, attempts, frame, make_config, recent


def world(tmp_path, pattern: str, **params) -> pd.DataFrame:
    config = make_config(tmp_path / pattern, **{**PATTERNS_OFF, pattern: params})
    write_synthetic(config, progress=False)
    return frame(config)


def only(pattern: str, tmp_path_factory, **params) -> tuple[SyntheticConfig, pd.DataFrame]:
    """A small world where `pattern` is the only source of fraud."""
    config = make_config(tmp_path_factory.mktemp(pattern) / "events", **{**PATTERNS_OFF, pattern: params})
    write_synthetic(config, progress=False)
    return config, frame(config)


def test_card_testing_bursts_precede_large_fraud(tmp_path_factory):
    _, df = only("card_testing", tmp_path_factory, card_rate=0.1)
    a = attempts(df)
    small_web = ((a.amount <= 2) & (a.channel == "ecommerce")).to_numpy()
    in_burst = small_web & (recent(a, 5 * MINUTE, small_web) >= 5)
    burst_cards = a.card_id[in_burst].unique()
    assert len(burst_cards) >= 10
    assert a[in_burst].approved.mean() < 0.3  # many declined
    assert (a[in_burst].is_fraud == 1).all()  # genuine customers never burst
    first_burst = a.card_id.map(a[in_burst].groupby("card_id").t.min())
    after = a[first_burst.notna() & (a.amount > 2) & (a.t > first_burst) & (a.t < first_burst + 3 * DAY)]
    others = a[~a.card_id.isin(burst_cards) & (a.amount > 2)]
    assert after.is_fraud.mean() > 0.4
    assert after.is_fraud.mean() > 20 * max(others.is_fraud.mean(), 1e-3)


def test_account_takeover_shifts_country_mcc_and_amount(tmp_path_factory):
    _, df = only("account_takeover", tmp_path_factory, customer_rate=0.1)
    a = attempts(df)
    a["foreign"] = a.merchant_country != a.card_country
    first_fraud = a.card_id.map(a[a.is_fraud == 1].groupby("card_id").t.min())
    before = a[first_fraud.notna() & (a.t < first_fraud)]
    fraud = a[a.is_fraud == 1]
    assert fraud.card_id.nunique() >= 10
    assert fraud.foreign.mean() > 0.5 and fraud.foreign.mean() > before.foreign.mean() + 0.3
    # Fraudsters spend several times the owner's usual amount, at other MCCs.
    usual = a[a.is_fraud == 0].groupby("card_id").amount.median()
    assert (fraud.amount / fraud.card_id.map(usual)).median() > 3
    legit = a[(a.is_fraud == 0) & (a.groupby("card_id").cumcount() >= 10)]
    assert mcc_seen_before(fraud, a).mean() < 0.5 < mcc_seen_before(legit, a).mean()
    # A country new to a seasoned card is a strong signal, and the episode persists once it starts.
    n_before = a.groupby("card_id").cumcount()
    new_country = (a.groupby(["card_id", "merchant_country"]).cumcount() == 0) & (n_before >= 10)
    seen_country = ~new_country & (n_before >= 10) & (first_fraud.isna() | (a.t < first_fraud))
    assert a[new_country].is_fraud.mean() > 5 * max(a[seen_country].is_fraud.mean(), 1e-3)
    same_place = a.groupby(["card_id", "merchant_country"])
    nxt_fraud, nxt_t = same_place.is_fraud.shift(-1), same_place.t.shift(-1)
    opened = new_country & (a.is_fraud == 1) & (nxt_t - a.t < 2 * DAY)
    assert opened.sum() >= 5 and nxt_fraud[opened].mean() > 0.8


def mcc_seen_before(rows: pd.DataFrame, a: pd.DataFrame) -> pd.Series:
    """Whether each row's MCC appeared on its card in an earlier legitimate attempt."""
    first_legit = a[a.is_fraud == 0].groupby(["card_id", "mcc"]).t.min().rename("first_t")
    first = rows.join(first_legit, on=["card_id", "mcc"]).first_t
    return first.notna() & (first < rows.t)


def test_compromised_merchant_customers_see_fraud_later(tmp_path_factory):
    config, df = only("compromised_merchants", tmp_path_factory, merchant_rate=0.1)
    world = build_world(config)
    a = attempts(df)
    start = pd.Series(world.compromise_start[world.compromised], index=world.compromised + 1)
    end = pd.Series(world.compromise_end[world.compromised], index=world.compromised + 1)
    at = a[a.merchant_id.isin(start.index)]
    at = at[(at.t >= at.merchant_id.map(start)) & (at.t < at.merchant_id.map(end))]
    exposed_at = a.card_id.map(at.groupby("card_id").t.min())
    after = a[exposed_at.notna() & (a.t > exposed_at)]
    before = a[exposed_at.notna() & (a.t <= exposed_at)]
    unexposed = a[exposed_at.isna()]
    assert at.card_id.nunique() >= 20
    assert after.is_fraud.mean() > 0.01
    assert before.is_fraud.sum() == 0 and unexposed.is_fraud.sum() == 0
    delay = (a[a.is_fraud == 1].groupby("card_id").t.min() - exposed_at.groupby(a.card_id).first()) / DAY
    # delay_days_min..max after the visit, then moved to a local daytime hour of that day.
    assert delay.dropna().between(3, 41).all() and delay.median() > 5



def test_every_fraud_names_its_pattern(tmp_path):
    config = make_config(tmp_path / "all", card_testing={"card_rate": 0.05}, replay={"customer_rate": 0.1},
                         dormant_reactivation={"customer_rate": 0.3})
    write_synthetic(config, progress=False)
    df = frame(config)
    fraud = df[df.is_fraud == 1]
    assert set(fraud.fraud_pattern) == {"card_testing", "account_takeover", "compromised_merchant", "replay",
                                        "dormant_reactivation"}
    assert df.fraud_pattern[df.is_fraud != 1].isna().all()
    # Dictionary-encoded like the other low-cardinality strings; readable by event id from the raw files.
    assert pq.ParquetFile(next(tmp_path.glob("all/part-*.parquet"))).metadata.row_group(0).column(17) \
        .encodings.count("RLE_DICTIONARY") == 1
    for name, pattern in (("card_testing", "card_testing"), ("replay", "replay")):
        only = world(tmp_path, name, **({"card_rate": 0.1} if name == "card_testing" else {"customer_rate": 0.2}))
        assert set(only.fraud_pattern.dropna()) == {pattern}


def test_replay_repeats_earlier_purchases_in_order_days_later(tmp_path):
    a = attempts(world(tmp_path, "replay", customer_rate=0.3))
    fraud, legit = a[a.is_fraud == 1], a[a.is_fraud == 0]
    assert fraud.card_id.nunique() >= 20
    # Every replayed attempt copies an earlier genuine one: same merchant, same amount, same hour of day
    # (within the 10-minute jitter), whole days later.
    pairs = fraud.reset_index().merge(legit, on=["card_id", "merchant_id", "amount", "channel"],
                                      suffixes=("", "_orig"))
    lag = pairs.t - pairs.t_orig
    off_day = np.minimum(lag % DAY, DAY - lag % DAY)
    pairs = pairs[(lag >= DAY - 10 * MINUTE) & (off_day <= 10 * MINUTE)]
    assert fraud.reset_index()["index"].isin(pairs["index"]).all()
    # The original order is kept: within a card, later replays copy later originals.
    first = pairs.sort_values("t_orig").drop_duplicates("index").sort_values("t")
    assert (first.groupby("card_id").t_orig.diff().dropna() >= 0).mean() > 0.95
    # Nothing a count sees is unusual: known merchants at the card's usual amounts.
    usual = legit.groupby("card_id").amount.median()
    ratio = (fraud.amount / fraud.card_id.map(usual)).median()
    assert 0.4 < ratio < 2.5


def test_dormant_cards_wake_up_in_new_categories(tmp_path):
    a = attempts(world(tmp_path, "dormant_reactivation", customer_rate=0.8))
    fraud = a[a.is_fraud == 1]
    assert fraud.card_id.nunique() >= 15
    # Before the first fraud, the card made no (non-recurring) attempt for at least 14 days.
    first = fraud.groupby("card_id").t.min()
    own = a[(a.is_fraud == 0) & (a.channel != "recurring")]
    own = own[own.t < own.card_id.map(first)]
    silence = (first - own.groupby("card_id").t.max()).dropna() / DAY
    assert len(silence) >= 15 and (silence >= 14).mean() > 0.9
    # Categories the card never used before, at domestic merchants, at prices ordinary for that MCC.
    seen = a[a.is_fraud == 0].groupby(["card_id", "mcc"]).t.min().rename("seen_t")
    seen_before = fraud.join(seen, on=["card_id", "mcc"]).seen_t < fraud.t
    assert seen_before.mean() < 0.2
    # (rare categories of small countries fall back to merchants abroad in this 600-merchant world)
    assert (fraud.merchant_country == fraud.card_country).mean() > 0.75
    typical = a[a.is_fraud == 0].groupby("mcc").amount.median()
    assert 0.3 < (fraud.amount / fraud.mcc.map(typical)).median() < 3.0


def test_adding_a_new_pattern_leaves_every_other_attempt_unchanged(tmp_path):
    keys = ["card_id", "t", "merchant_id", "amount", "is_fraud", "fraud_pattern"]
    base = {**PATTERNS_OFF, "card_testing": {"card_rate": 0.05}}
    without = make_config(tmp_path / "without", **base)
    with_both = make_config(tmp_path / "with", **{**base, "replay": {"customer_rate": 0.2},
                                                  "dormant_reactivation": {"customer_rate": 0.5}})
    for config in (without, with_both):
        write_synthetic(config, progress=False)
    before, after = attempts(frame(without)), attempts(frame(with_both))
    added = after.fraud_pattern.isin(["replay", "dormant_reactivation"])
    assert added.sum() > 20
    pd.testing.assert_frame_equal(before[keys].reset_index(drop=True), after[~added][keys].reset_index(drop=True))
