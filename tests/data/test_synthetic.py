"""The synthetic payments world: determinism, exact schema, label timing, base rates, planted patterns.

Worlds are small (20k-100k events, well under a second each) and built once per module where shared.
Pattern tests switch the other fraud patterns off so each measurement sees only the pattern under test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from foundation.data.synthetic import (
    EVENT_SCHEMA,
    SyntheticConfig,
    build_world,
    config_hash,
    ensure_synthetic,
    generate,
    synthetic_config,
    write_synthetic,
)
from foundation.data.synthetic.attempts import PURCHASE, Attempts
from foundation.data.synthetic.authorization import PERIOD_DAYS, out_of_funds
from foundation.data.synthetic.catalog import PAY_SCHEDULES
from foundation.data.synthetic.customers import draw_customers

CONF = Path(__file__).resolve().parents[2] / "conf"
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
# Enough merchants that most (category, country) pairs exist, as in the default world (else purchases
# fall back to merchants abroad and blur the country signals).
SMALL = dict(n_events=20_000, n_customers=200, n_merchants=600, n_issuers=8, block_customers=128)
PATTERNS_OFF = dict(card_testing={"card_rate": 0.0}, account_takeover={"customer_rate": 0.0},
                    compromised_merchants={"merchant_rate": 0.0}, replay={"customer_rate": 0.0},
                    dormant_reactivation={"customer_rate": 0.0})
SECTION_7 = [("event_id", pa.int64()), ("ts", pa.timestamp("ms")), ("card_id", pa.int64()),
             ("merchant_id", pa.int64()), ("issuer_id", pa.int64()), ("event_type", pa.string()),
             ("amount", pa.float64()), ("currency", pa.string()), ("mcc", pa.string()),
             ("merchant_country", pa.string()), ("card_country", pa.string()), ("channel", pa.string()),
             ("merchant_descriptor", pa.string()), ("decline_code", pa.string()),
             ("disputed_event_id", pa.int64()), ("is_fraud", pa.float64()), ("approved", pa.float64()),
             ("fraud_pattern", pa.string())]


def make_config(events_dir: Path, **overrides) -> SyntheticConfig:
    return synthetic_config(**{**SMALL, "events_dir": str(events_dir), **overrides})


def frame(config: SyntheticConfig) -> pd.DataFrame:
    """All events with `t` = ms since the period start."""
    df = pq.read_table(config.events_dir).to_pandas()
    df["t"] = df.ts.astype("int64") - np.datetime64(config.start, "ms").astype(np.int64)
    return df


def attempts(df: pd.DataFrame) -> pd.DataFrame:
    """Charges and declines sorted by (card, time), with `code` ("ok" when approved)."""
    a = df[df.event_type.isin(["charge", "decline"])].sort_values(["card_id", "t", "event_id"])
    a = a.reset_index(drop=True)
    a["code"] = a.decline_code.fillna("ok")
    return a


def recent(a: pd.DataFrame, window_ms: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Per attempt: earlier attempts of the same card within `window_ms` (only rows in `mask` counted)."""
    key = (a.card_id.to_numpy().astype(np.int64) << 37) | a.t.to_numpy()
    counted = key if mask is None else key[mask]
    return np.searchsorted(counted, key, side="left") - np.searchsorted(counted, key - window_ms, side="left")


def sha256s(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("part-*.parquet"))}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    config = make_config(tmp_path_factory.mktemp("small") / "events")
    summary = write_synthetic(config, progress=False)
    return config, summary, frame(config)


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    """Default rates on 1000 customers: enough events for stable rates and decline patterns."""
    config = make_config(tmp_path_factory.mktemp("medium") / "events", n_events=100_000, n_customers=1000,
                         n_merchants=1000, n_issuers=10, block_customers=256)
    summary = write_synthetic(config, progress=False)
    return config, summary, frame(config)


# ---------------------------------------------------------------- determinism and layout

def test_same_config_writes_identical_bytes(tmp_path):
    first = write_synthetic(make_config(tmp_path / "a"), progress=False)
    second = write_synthetic(make_config(tmp_path / "b"), progress=False)
    other_seed = write_synthetic(make_config(tmp_path / "c", seed=8), progress=False)
    assert first.n_events == second.n_events > 0
    assert sha256s(tmp_path / "a") == sha256s(tmp_path / "b")
    assert sha256s(tmp_path / "a") != sha256s(tmp_path / "c")
    assert first.config_hash == second.config_hash != other_seed.config_hash


def test_rows_do_not_depend_on_file_layout(tmp_path):
    many = make_config(tmp_path / "many", n_customers=300, n_events=12_000, blocks_per_file=1)
    one = make_config(tmp_path / "one", n_customers=300, n_events=12_000, blocks_per_file=3)
    assert len(write_synthetic(many, progress=False).files) == 3
    assert len(write_synthetic(one, progress=False).files) == 1
    assert pq.read_table(many.events_dir).equals(pq.read_table(one.events_dir))
    assert config_hash(many) != config_hash(one)


def test_switching_a_pattern_off_keeps_legitimate_activity(tmp_path):
    keys = ["card_id", "t", "merchant_id", "amount"]
    on = attempts(frame(write_and_get(make_config(tmp_path / "on"))))
    off = attempts(frame(write_and_get(make_config(tmp_path / "off", card_testing={"card_rate": 0.0}))))
    assert on.is_fraud.sum() > off.is_fraud.sum()
    legit_on = on[on.is_fraud == 0][keys].reset_index(drop=True)
    legit_off = off[off.is_fraud == 0][keys].reset_index(drop=True)
    pd.testing.assert_frame_equal(legit_on, legit_off)


def write_and_get(config: SyntheticConfig) -> SyntheticConfig:
    write_synthetic(config, progress=False)
    return config


# ---------------------------------------------------------------- schema and labels

def test_schema_is_section_7_exactly(small):
    config, _, _ = small
    table = pq.read_table(config.events_dir)
    assert [(f.name, f.type) for f in table.schema] == SECTION_7
    assert table.schema.equals(EVENT_SCHEMA)


def test_columns_hold_valid_values(small):
    config, summary, df = small
    assert len(df) == summary.n_events and df.event_id.is_unique
    assert set(df.event_type) == {"charge", "decline", "refund", "dispute"}
    assert (df.amount > 0).all()
    assert df.ts.min() >= pd.Timestamp(config.start) and df.ts.max() < pd.Timestamp(config.end)
    assert df.mcc.str.fullmatch(r"\d{4}").all() and df.currency.str.fullmatch(r"[A-Z]{3}").all()
    assert df.merchant_country.str.fullmatch(r"[A-Z]{2}").all() and df.card_country.str.fullmatch(r"[A-Z]{2}").all()
    assert set(df.channel) == {"card_present", "ecommerce", "recurring"}
    assert df.merchant_descriptor.str.len().between(3, 25).all()
    is_attempt = df.event_type.isin(["charge", "decline"])
    assert (df.decline_code.notna() == (df.event_type == "decline")).all()
    assert (df.disputed_event_id.notna() == (df.event_type == "dispute")).all()
    assert (df.is_fraud.notna() == is_attempt).all() and (df.approved.notna() == is_attempt).all()
    assert (df.approved[is_attempt] == (df.event_type[is_attempt] == "charge")).all()
    assert set(df.is_fraud.dropna()) == {0.0, 1.0}
    # The planted pattern names exactly the fraudulent attempts (a label like is_fraud, never on follow-ups).
    assert (df.fraud_pattern.notna() == (df.is_fraud == 1)).all()
    assert set(df.fraud_pattern.dropna()) <= {"card_testing", "account_takeover", "compromised_merchant", "replay",
                                              "dormant_reactivation"}
    # Each card keeps one issuer and one card country; rows are ordered by (card_id, ts).
    assert (df.groupby("card_id")[["issuer_id", "card_country"]].nunique() == 1).all().all()
    assert (np.diff(df.card_id) >= 0).all()


def test_disputes_reference_approved_fraud_days_later(small):
    _, _, df = small
    disputes = df[df.event_type == "dispute"]
    charges = df.set_index("event_id").loc[disputes.disputed_event_id]
    assert len(disputes) > 20 and disputes.disputed_event_id.is_unique
    assert (charges.event_type == "charge").all() and (charges.is_fraud == 1).all() and (charges.approved == 1).all()
    assert (charges.card_id.to_numpy() == disputes.card_id.to_numpy()).all()
    assert (charges.amount.to_numpy() == disputes.amount.to_numpy()).all()
    delay = (disputes.t.to_numpy() - charges.t.to_numpy()) / DAY
    assert delay.min() >= 2.0 and delay.max() <= 30.0
    # Most approved fraud that had time to be reported is disputed (not all: tiny charges go unnoticed).
    fraud = df[(df.event_type == "charge") & (df.is_fraud == 1) & (df.t < df.t.max() - 30 * DAY)]
    assert 0.6 < fraud.event_id.isin(disputes.disputed_event_id).mean() < 1.0


def test_refunds_follow_an_approved_charge(small):
    _, summary, df = small
    assert summary.event_type_counts["refund"] > 0
    charges = df[df.event_type == "charge"]
    refunds = df[df.event_type == "refund"]
    pairs = refunds.merge(charges, on=["card_id", "merchant_id", "merchant_descriptor"], suffixes=("", "_charge"))
    pairs = pairs[(pairs.t_charge < pairs.t) & (pairs.amount <= pairs.amount_charge)]
    assert refunds.event_id.isin(pairs.event_id).all()


# ---------------------------------------------------------------- rates and scale

def test_base_rates_and_size_match_the_brief(medium):
    config, summary, df = medium
    a = attempts(df)
    assert abs(summary.n_events - config.n_events) < 0.1 * config.n_events
    assert summary.fraud_rate == pytest.approx(a.is_fraud.mean())
    assert summary.decline_rate == pytest.approx(1 - a.approved.mean())
    assert summary.dispute_rate == pytest.approx((df.event_type == "dispute").mean())
    assert 0.005 <= summary.fraud_rate <= 0.02
    assert 0.05 <= summary.decline_rate <= 0.10
    assert 0.003 <= summary.dispute_rate <= 0.01
    assert summary.event_type_counts == df.event_type.value_counts().to_dict()


def test_amounts_are_log_normal_per_category(medium):
    _, _, df = medium
    legit = attempts(df)
    legit = legit[(legit.is_fraud == 0) & (legit.currency == "USD")]
    medians = legit.groupby("mcc").amount.median()
    assert medians["5732"] > 5 * medians["5814"]  # electronics vs fast food
    log_sd = np.log(legit[legit.mcc == "5411"].amount).std()
    assert 0.5 < log_sd < 1.5


# ---------------------------------------------------------------- planted patterns

def test_out_of_funds_declines_come_in_runs_late_in_the_pay_cycle(medium):
    _, _, df = medium
    a = attempts(df)
    is_51 = a.code == "51"
    prev_51 = is_51.groupby(a.card_id).shift(1, fill_value=False)
    assert is_51.mean() > 0.005
    assert is_51[prev_51].mean() > 10 * is_51.mean()  # runs of 51s ...
    day = a.ts.dt.day
    assert is_51[day >= 26].mean() > 2 * is_51[day <= 4].mean()  # ... at the end of the month (paydays: 1st, 15th, Fridays)
    last_51 = a.card_id.map(a[is_51].groupby("card_id").t.max())
    recovered = a[(a.t > last_51) & (a.code == "ok")].card_id.nunique()
    assert recovered > 0.7 * a.card_id[is_51].nunique()  # ... and cards recover


def test_funds_deplete_with_spending_and_refill_on_payday(small):
    """Unit check of the funds mechanism on one customer: $30 a day against a $100 monthly income."""
    config, _, _ = small
    config = dataclasses.replace(config, funds=dataclasses.replace(config.funds, savings_cap=0.0))
    world = build_world(config)
    cb = draw_customers(config, world, 0)
    payday = world.paydays[PAY_SCHEDULES.index("monthly")]  # 1st of each month, 06:00
    time = np.sort(np.r_[payday[0] + np.arange(1, 28) * DAY, payday[0] + 10 * DAY + HOUR, payday[1] + HOUR])
    amount = np.where(time == payday[0] + 10 * DAY + HOUR, 5.0, 30.0)
    n = len(time)
    att = Attempts.build(np.zeros(n, np.int64), time, np.zeros(n, np.int64), amount, 0, PURCHASE)
    periods = max((cb.end[0] - cb.start[0]) / (PERIOD_DAYS[0] * DAY), 1.0)
    cb.schedule[0], cb.tightness[0] = 0, 100.0 * periods / amount.sum()  # income 100 per month
    cb.period_noise[0], cb.initial_savings[0] = 1.0, 0.0
    declined = out_of_funds(config, world, cb, att, np.ones(n, dtype=bool))
    assert not declined[:3].any() and declined[3]  # 3 x 30 spent; 30 > 10 left
    assert not declined[amount == 5.0].all()  # a small purchase still fits
    assert declined[(time > time[3]) & (time < payday[1]) & (amount == 30.0)].all()
    assert not declined[-1]  # payday refills


def test_issuer_declines_rise_with_amount_cross_border_and_velocity(medium):
    _, _, df = medium
    a = attempts(df)
    a["velocity_1h"] = recent(a, HOUR)
    a["velocity_1d"] = recent(a, DAY)
    risk = a[(a.is_fraud == 0) & a.code.isin(["ok", "05", "59", "65", "57"])]
    declined = risk.code != "ok"
    domestic_usd = (risk.currency == "USD") & (risk.card_country == "US")
    by_amount = declined[domestic_usd].groupby(pd.qcut(risk.amount[domestic_usd], 5, labels=False)).mean()
    assert by_amount.is_monotonic_increasing and by_amount.iloc[-1] > 2.5 * by_amount.iloc[0]
    cross = risk.merchant_country != risk.card_country
    assert declined[cross].mean() > 1.5 * declined[~cross].mean()
    assert declined[risk.velocity_1h >= 2].mean() > 1.5 * declined[risk.velocity_1h == 0].mean()
    assert declined[risk.velocity_1d >= 3].mean() > 1.2 * declined[risk.velocity_1d == 0].mean()
    by_issuer = declined.groupby(risk.issuer_id).mean()
    assert by_issuer.max() > 2 * by_issuer.min()
    # 65 (frequency) only past a per-issuer limit of at least 4 attempts in the hour.
    assert (a.code == "65").sum() > 0 and a[a.code == "65"].velocity_1h.min() >= 4


@pytest.mark.slow
def test_fraud_needs_the_sequence(medium):
    """A GBDT on the event's own fields finds some fraud; the card's recent history finds much more."""
    lightgbm = pytest.importorskip("lightgbm")
    from sklearn.metrics import average_precision_score

    _, _, df = medium
    a = attempts(df)
    own = pd.DataFrame({"log_amount": np.log(a.amount), "cross_border": a.merchant_country != a.card_country,
                        "hour": a.ts.dt.hour, **{c: a[c].astype("category") for c in
                                                 ("mcc", "channel", "merchant_country", "card_country")}})
    small_web = ((a.amount <= 2) & (a.channel == "ecommerce")).to_numpy()
    log_amount = np.log(a.amount)
    n_before = a.groupby("card_id").cumcount()
    mean_before = (log_amount.groupby(a.card_id).cumsum() - log_amount) / n_before.where(n_before > 0)
    history = pd.DataFrame({
        "small_web_10m": recent(a, 10 * MINUTE, small_web), "attempts_1h": recent(a, HOUR),
        "attempts_1d": recent(a, DAY), "declines_1d": recent(a, DAY, (a.code != "ok").to_numpy()),
        "new_country": a.groupby(["card_id", "merchant_country"]).cumcount() == 0,
        "new_mcc": a.groupby(["card_id", "mcc"]).cumcount() == 0,
        "amount_vs_usual": log_amount - mean_before,
    })
    train, test = (a.ts < "2024-05-01").to_numpy(), (a.ts >= "2024-05-15").to_numpy()
    scores = {}
    for name, features in (("own", own), ("with history", pd.concat([own, history], axis=1))):
        model = lightgbm.LGBMClassifier(n_estimators=200, learning_rate=0.05, verbose=-1, random_state=0, n_jobs=1)
        model.fit(features[train], a.is_fraud[train])
        scores[name] = average_precision_score(a.is_fraud[test], model.predict_proba(features[test])[:, 1])
    assert scores["with history"] > scores["own"] + 0.15 and scores["with history"] > 0.7, scores


# ---------------------------------------------------------------- ensure, Hydra, errors

def test_ensure_skips_matching_files_and_regenerates_on_change(tmp_path):
    config = make_config(tmp_path / "events", n_events=5_000, n_customers=50, n_merchants=60)
    first = ensure_synthetic(config, progress=False)
    stamp = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "events").glob("part-*")}
    again = ensure_synthetic(config, progress=False)
    assert first.generated and not again.generated and again.n_events == first.n_events
    assert stamp == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "events").glob("part-*")}
    manifest = json.loads((tmp_path / "events" / "_manifest.json").read_text())
    assert manifest["config_hash"] == config_hash(config)
    changed = ensure_synthetic(make_config(tmp_path / "events", n_events=5_000, n_customers=50, n_merchants=60,
                                           seed=config.seed + 1), progress=False)
    assert changed.generated and changed.config_hash != first.config_hash
    # A damaged part is noticed through the sizes in the manifest.
    part = tmp_path / "events" / changed.files[0]
    part.write_bytes(part.read_bytes()[:100])
    assert ensure_synthetic(make_config(tmp_path / "events", n_events=5_000, n_customers=50, n_merchants=60,
                                        seed=config.seed + 1), progress=False).generated


def test_refuses_to_replace_a_folder_with_foreign_files(tmp_path):
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        write_synthetic(make_config(tmp_path / "events", n_events=2_000, n_customers=20, n_merchants=60),
                        progress=False)
    assert (tmp_path / "events" / "notes.txt").exists()


def test_hydra_config_composes_and_generates(tmp_path):
    overrides = [f"paths.root_dir={tmp_path}", "synthetic.n_events=3000", "synthetic.n_customers=30",
                 "synthetic.n_merchants=60"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="generate", overrides=overrides)
    config = instantiate(cfg.synthetic)
    assert isinstance(config, SyntheticConfig) and config.n_events == 3000
    summary = generate(cfg)
    assert Path(summary.path) == tmp_path / "data" / "synthetic" / "events"
    assert pq.read_schema(Path(summary.path) / "part-00000.parquet").equals(EVENT_SCHEMA)
    # The YAML documents every parameter the dataclasses have, and their defaults agree.
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yaml_config = instantiate(compose(config_name="generate", overrides=[f"paths.root_dir={tmp_path}"]).synthetic)
    assert yaml_config == SyntheticConfig(events_dir=str(tmp_path / "data" / "synthetic" / "events"))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"card_testing": {"card_rate": 1.5}}, r"card_testing\.card_rate"),
    ({"card_testing": {"burst_size": 3}}, r"burst_size.*card_testing"),
    ({"n_merchants": 10}, r"n_merchants"),
    ({"end": "2023-12-01"}, r"`end`"),
    ({"funds": {"tight_income_min": 2.0}}, r"funds\.tight_income_min"),
    ({"n_events": 300, "n_customers": 200}, r"n_events"),
])
def test_bad_parameters_name_the_field(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        config = make_config(tmp_path / "events", **overrides)
        build_world(config)
        write_synthetic(config, progress=False)
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left behind
