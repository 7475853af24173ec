"""Baseline (a): LightGBM on hand-crafted velocity features, under the out-of-time protocol.

This is the model a fraud team already runs; every foundation-model head is reported next to it, on the same
test examples. `velocity_baseline` returns `ModelResult`s that `write_report` takes as they are.

    python -m foundation.evaluation.baseline --schema conf/data/synthetic.yaml --out outputs/baseline
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from foundation.evaluation.report import VELOCITY_BASELINE, ModelResult
from foundation.evaluation.splits import TaskSpec, check_no_leakage, select_examples, subsample_labels
from foundation.heads.gbdt import GBDTHead
from foundation.pointintime import VelocityConfig, VelocityFeatures, velocity_features

log = logging.getLogger(__name__)

MODEL_NAME = VELOCITY_BASELINE


def velocity_baseline(
    events: pa.Table,
    schema: Any,
    task: TaskSpec,
    label_fractions: Sequence[float] | None = None,
    seed: int = 0,
    features: VelocityFeatures | None = None,
    save_dir: str | Path | None = None,
) -> list[ModelResult]:
    """Train and score the velocity LightGBM of one task at each label fraction.

    The label fraction applies to the train and validation labels alike (a team with 1% of the labels
    has 1% to stop early and pick a threshold on too); the test examples are always all of them.

    Args:
        events: canonical event table.
        schema: the data schema (splits, fields, labels).
        task: the task spec (its `velocity` and `gbdt` blocks configure features and head).
        label_fractions: default the task's `label_fractions`.
        seed: label subsampling seed.
        features: precomputed velocity features of `events` (default: computed here).
        save_dir: when given, the full-label head is saved to <save_dir>/heads/<task>/velocity_gbdt/.

    Returns:
        One ModelResult per label fraction, scored on the task's test examples.
    """
    check_no_leakage(schema)
    splits = {name: select_examples(events, schema, task, name) for name in ("train", "validation", "test")}
    for name, table in splits.items():
        labels = table.column("label").to_numpy()
        if len(labels) == 0 or labels.min() == labels.max():
            raise ValueError(f"task {task.name}: the {name} period has {len(labels)} examples and "
                             f"{int(labels.sum())} positives; both classes are needed")
    if features is None:
        features = velocity_features(events, schema, VelocityConfig.from_config(task.velocity))
    test = splits["test"]
    X_test = features.values[test.column("row").to_numpy()]
    results = []
    for fraction in tqdm(label_fractions or task.label_fractions, desc=f"{task.name} velocity gbdt"):
        train = subsample_labels(splits["train"], fraction, seed)
        validation = subsample_labels(splits["validation"], fraction, seed)
        head = GBDTHead.from_config(task.gbdt).fit(
            features.values[train.column("row").to_numpy()], train.column("label").to_numpy(),
            features.values[validation.column("row").to_numpy()], validation.column("label").to_numpy(),
            feature_names=features.names, categorical_features=features.categorical,
        )
        scores = head.predict_proba(X_test)
        results.append(ModelResult.from_examples(
            test, task.name, MODEL_NAME, scores, label_fraction=float(fraction), n_train=len(train),
            extra={"threshold": head.threshold, **{f"gbdt_{k}": v for k, v in head.info.items()}},
        ))
        if save_dir is not None and fraction == 1.0:
            head.save(Path(save_dir) / "heads" / task.name / MODEL_NAME, task=task.name,
                      entity_types=list(task.entities),
                      feature_layout={"kind": "velocity", "names": features.names,
                                      "categorical": features.categorical, "categories": features.categories,
                                      "velocity": task.velocity})
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Run baseline (a) on a dataset and write its report (a check, not a test)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", default="conf/data/synthetic.yaml", help="conf/data/<name>.yaml")
    parser.add_argument("--data-dir", default="data", help="paths.data_dir the schema interpolates")
    parser.add_argument("--source", default=None, help="override source.path of the schema")
    parser.add_argument("--tasks", nargs="+", default=["fraud", "authorization"], help="conf/task/<name>.yaml")
    parser.add_argument("--fractions", nargs="+", type=float, default=None, help="label fractions")
    parser.add_argument("--out", default="outputs/baseline", help="report folder")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from foundation.data.schema import DataSchema
    from foundation.evaluation.report import write_report
    from foundation.preparation import load_events

    overrides = [f"source.path={args.source}"] if args.source else []
    root = {"paths": {"data_dir": args.data_dir, "root_dir": "."}}
    schema = DataSchema.from_yaml(args.schema, overrides=overrides, root=root)
    events, _ = load_events(schema)
    conf_dir = Path(__file__).resolve().parents[2] / "conf" / "task"
    results: list[ModelResult] = []
    for name in args.tasks:
        task = TaskSpec.from_config(conf_dir / f"{name}.yaml")
        if task.label not in schema.labels:
            log.warning("dataset %s has no label %r: skipping task %s", schema.name, task.label, name)
            continue
        results += velocity_baseline(events, schema, task, args.fractions, save_dir=args.out)
    paths = write_report(args.out, results, n_bootstrap=args.n_bootstrap)
    print(Path(paths["report_md"]).read_text())
    for result in results:
        positives = int(np.sum(result.labels))
        print(f"{result.task} {result.label}: n_test={len(result.labels)} positives={positives}")


if __name__ == "__main__":
    main()
