"""A dataset with only a card, a terminal, an amount, a time and dispute events runs the whole quickstart path
(data -> sequences -> tokenizer -> pretraining -> every head and baseline -> report) from its one YAML file.

The events follow the public fraud-detection handbook's simulator in miniature: compromised terminals (every
charge there is fraud for two weeks), compromised cards (a share of their charges at five times their usual
amount) and large amounts; each fraud is disputed seven days later by an event that names no transaction.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.embeddings.world import REPO
from tests.lightning.conftest import script_env

FIXTURE = REPO / "tests" / "fixtures" / "minimal_card" / "data.yaml"
DAY_MS = 86_400_000
START_MS = 1_704_067_200_000  # 2024-01-01


def handbook_events(n_cards: int = 80, n_terminals: int = 40, days: int = 60, seed: int = 0) -> pa.Table:
    """Charges and their disputes (columns of tests/fixtures/minimal_card/data.yaml)."""
    rng = np.random.default_rng(seed)
    rows = []
    typical = rng.uniform(20, 80, n_cards)
    home = [rng.choice(n_terminals, 8, replace=False) for _ in range(n_cards)]
    bad_terminal = {int(t): int(rng.integers(0, days - 14)) for t in rng.choice(n_terminals, 6, replace=False)}
    bad_terminal.update({int(t): days - 10 for t in home[0][:2]})  # two compromised in the test period
    bad_card = {int(c): int(rng.integers(0, days - 14)) for c in rng.choice(n_cards, 8, replace=False)}
    for card in range(n_cards):
        for day in range(days):
            for _ in range(rng.poisson(1.5)):
                terminal = int(rng.choice(home[card]))
                amount = round(float(rng.normal(typical[card], typical[card] / 3)), 2)
                fraud = day - bad_terminal.get(terminal, -99) in range(14)
                if day - bad_card.get(card, -99) in range(14) and rng.random() < 0.3:
                    amount, fraud = round(amount * 5, 2), True
                fraud = fraud or amount > 220
                rows.append((START_MS + day * DAY_MS + int(rng.integers(0, DAY_MS)), card, terminal, abs(amount), fraud))
    rows.sort()
    ts, card, terminal, amount, fraud = map(np.asarray, zip(*rows))
    disputed = np.flatnonzero(fraud)
    ts = np.concatenate([ts, ts[disputed] + 7 * DAY_MS])
    kind = ["charge"] * len(rows) + ["dispute"] * len(disputed)
    return pa.table({"tx_id": [f"tx{i}" for i in range(len(ts))], "ts": pa.array(ts, pa.timestamp("ms")),
                     "customer_id": [f"card{c}" for c in np.concatenate([card, card[disputed]])],
                     "terminal_id": [f"T{t}" for t in np.concatenate([terminal, terminal[disputed]])],
                     "kind": kind, "amount": np.concatenate([amount, amount[disputed]])})


@pytest.mark.slow
def test_card_terminal_amount_time_disputes_run_the_quickstart(tmp_path):
    events = tmp_path / "events.parquet"
    pq.write_table(handbook_events(), events)
    own_conf = tmp_path / "conf" / "data"  # a user's config folder holding their one dataset YAML
    own_conf.mkdir(parents=True)
    shutil.copy(FIXTURE, own_conf / "minimal_card.yaml")
    overrides = ["data=minimal_card", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "experiment=smoke",
                 f"data.source.path={events}", "logger=csv", "model=tiny", "++model.max_position=32",
                 "datamodule.batches_per_epoch=6", "datamodule.val_batches=2", "trainer.max_epochs=1",
                 "finetune_overrides=['examples.customers=null','examples.days=null','label_fractions=[1.0]',"
                 "'heads.full.head.budget_minutes=0.05','report.n_bootstrap=20','report.trait_customers=20']"]
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "quickstart.py"), *overrides], cwd=REPO,
                          env=script_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = Path(done.stdout.strip().splitlines()[-1])

    results = json.loads((report / "metrics.json").read_text())["results"]
    assert {r["task"] for r in results} == {"fraud"}, "authorization needs an `approved` label the data lacks"
    models = {r["model"] for r in results}
    assert {"probe", "mlp", "gbdt", "fusion", "full", "scratch", "velocity_lgbm_baseline"} <= models
    charged = events_in_test(pq.read_table(events))
    assert {r["n_test"] for r in results} == {charged["charges"]}
    assert {r["n_test_positive"] for r in results} == {charged["disputed"]}, "each dispute marks its charge"
    assert (report / "plots" / "fraud_curves.png").stat().st_size > 0
    # the quickstart's entity block: a 7-day validation split cannot hold merchant_risk's 30-day horizon, said so
    skipped = json.loads((report / "entity_metrics.json").read_text())["skipped"]
    assert "30-day horizon before the test split starts" in skipped["merchant_risk"]


def events_in_test(table: pa.Table) -> dict[str, int]:
    """Charges of the fixture's test period, and how many of them a dispute (7 days later) names."""
    ts = table["ts"].cast(pa.int64()).to_numpy()
    start, end = 1_708_560_000_000, 1_709_251_200_000  # 2024-02-22, 2024-03-01
    kind = np.asarray(table["kind"].to_pylist())
    charge = (kind == "charge") & (ts >= start) & (ts < end)
    disputed = (kind == "dispute") & (ts - 7 * DAY_MS >= start) & (ts - 7 * DAY_MS < end)
    return {"charges": int(charge.sum()), "disputed": int(disputed.sum())}
