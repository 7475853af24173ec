"""Fine-tuning: task heads on a pretrained model, the baselines on the same examples, and the report.

For each task (conf/task/<name>.yaml) the examples come from the out-of-time protocol of
`foundation.evaluation.splits` (train / validation / test periods of the data config, labels delayed), bounded
by `examples` (a seeded share of customers and a number of days per period, so a run fits in CPU minutes).
The frozen task features `[h_entity(t)..., event_vector(e), has_history flags, surprise]` are computed once
with the pretrained model for every task (foundation.pointintime).

Heads and baselines are training recipes built from conf/head/*.yaml and `baselines` with `_target_`
(recipes.py): `probe` and `mlp` on the frozen features, `gbdt` (LightGBM on the features plus the event's raw
fields), `embeddings_velocity_lgbm` (LightGBM on the features plus the velocity features), `full` (encoder
fine-tuned end to end); baselines `velocity_lgbm_baseline` (LightGBM on the velocity features alone) and
`scratch` (the full head from a randomly initialised encoder). Each runs at every label fraction. Heads
trained on all labels are saved under `<run_dir>/heads/<task>/<name>/`; the report (metrics.json, report.md,
plots/) goes to `<run_dir>`.

| module | what |
|---|---|
| pipeline.py | `finetune(cfg)`, `finetune_all(cfg)`, `run_finetune(cfg, tasks)` |
| config.py | `finetune_config(overrides)`, the task specs, the saved config |
| run.py | `FinetuneRun`: pretrained run, events, examples, frozen states |
| examples.py | example bounds and seeded subsamples |
| blocks.py | extra feature blocks (raw fields, velocity features) |
| recipes.py | `FrozenFeatures`, `FullFinetune` |
| summary.py | `results_table`, the trait embeddings of the report |
"""

from foundation.finetuning.config import ALL_TASKS, CONF_DIR, finetune_config
from foundation.finetuning.examples import bound_examples, chosen_customers, training_pool
from foundation.finetuning.pipeline import finetune, finetune_all, instantiate_models, run_finetune
from foundation.finetuning.summary import results_table

__all__ = ["ALL_TASKS", "CONF_DIR", "bound_examples", "chosen_customers", "finetune", "finetune_all",
           "finetune_config", "instantiate_models", "results_table", "run_finetune", "training_pool"]
