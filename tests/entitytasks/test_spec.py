"""Entity task YAMLs: every conf/task/*.yaml of kind entity parses, and resolves per schema or says why not."""

from pathlib import Path

import pytest

from foundation.entitytasks.spec import EntityTaskSpec, is_entity_task
from foundation.evaluation.splits import _plain_config
from tests.conftest import make_schema

CONF = Path(__file__).resolve().parents[2] / "conf" / "task"
ENTITY_TASKS = ("merchant_risk", "customer_churn", "customer_distress", "issuer_decline_shift")


def _spec(name: str) -> EntityTaskSpec:
    return EntityTaskSpec.from_config(CONF / f"{name}.yaml")


def test_every_entity_task_yaml_parses_and_event_tasks_are_not_entity_tasks():
    kinds = {p.stem: is_entity_task(_plain_config(p)) for p in CONF.glob("*.yaml")}
    assert {name for name, entity in kinds.items() if entity} == set(ENTITY_TASKS)
    problems = {name: _spec(name).targets[0].problem for name in ENTITY_TASKS}
    assert problems == {"merchant_risk": "binary", "customer_churn": "binary", "customer_distress": "regression",
                        "issuer_decline_shift": "multiclass"}
    with pytest.raises(ValueError, match="not an entity task"):
        EntityTaskSpec.from_config(CONF / "fraud.yaml")


def test_payments_schema_runs_every_task_with_its_first_target():
    schema = make_schema()
    for name in ENTITY_TASKS:
        target, why = _spec(name).resolve(schema)
        assert target is not None, why
        assert target.measure == _spec(name).targets[0].measure


def test_a_card_transaction_schema_falls_back_or_skips_with_the_reason():
    # Sparkov-like: every row a transaction, an is_fraud label, no event type, no decline code, no issuer
    schema = make_schema(fields={"amount": {"type": "numeric"}, "category": {"type": "categorical"}},
                         labels=("is_fraud",), entities=("customer", "merchant"))
    risk, _ = _spec("merchant_risk").resolve(schema)
    assert risk.measure == "label_rate" and risk.label == "is_fraud" and risk.denominator.field is None
    churn, _ = _spec("customer_churn").resolve(schema)
    assert churn.measure == "count" and churn.events.field is None  # every transaction is an attempt
    distress, why = _spec("customer_distress").resolve(schema)
    assert distress is None and "event_type" in why
    issuer, why = _spec("issuer_decline_shift").resolve(schema)
    assert issuer is None and "no entity 'issuer'" in why


@pytest.mark.parametrize("name", ENTITY_TASKS)
def test_finetune_config_composes_each_entity_task(name):
    from foundation.finetuning import finetune_config

    cfg = finetune_config(["checkpoint=x", f"task={name}"])
    assert is_entity_task(cfg.task) and EntityTaskSpec.from_config(cfg.task) == _spec(name)


def test_embedding_lookback_parses_to_ms_and_rejects_zero_or_repeats():
    config = _plain_config(CONF / "customer_churn.yaml")
    assert _spec("customer_churn").lookback == ()
    assert EntityTaskSpec.from_config({**config, "embedding": {"lookback": ["7d", "30d"]}}).lookback == (
        7 * 86_400_000, 30 * 86_400_000)
    for bad in (["0d"], ["7d", "7d"]):
        with pytest.raises(ValueError, match="embedding.lookback must hold distinct positive durations"):
            EntityTaskSpec.from_config({**config, "embedding": {"lookback": bad}})


def test_embedding_hazard_parses_to_ms_and_churn_ships_with_it():
    day = 86_400_000
    assert _spec("customer_churn").hazard == (day, 7 * day, 30 * day)
    assert _spec("merchant_risk").hazard == ()
    config = _plain_config(CONF / "merchant_risk.yaml")
    assert EntityTaskSpec.from_config({**config, "embedding": {"hazard": ["30d"]}}).hazard == (30 * day,)
    with pytest.raises(ValueError, match="embedding.hazard must hold distinct positive durations"):
        EntityTaskSpec.from_config({**config, "embedding": {"hazard": ["30d", "30d"]}})
