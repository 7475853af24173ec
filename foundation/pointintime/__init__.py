"""Point-in-time state and task features: the one owner of "what was known just before an event".

Everything computed for an event at time t reads only what was known strictly before t, in
(event_time, event_id) order; the online service and the batch path (embedding export, heads, fine-tuning)
call the same functions, so online == batch by construction. Read in this order:

- `windows`: the window rule (`window_start`) and its batch plans: which causal passes give exact states.
- `batches`: live rows -> one-row sequence tables -> model batches (the service's inputs).
- `encoder`: the encoder pass: hidden states and outcome-free event vectors (`PointInTimeEncoder`).
- `states`: as-of lookups over a sequence store, shard by shard (`PointInTimeStates`).
- `surprise`: how unexpected an event is under the pretrained next-event heads.
- `features`: the task feature layout (entity states + event vector + flags + surprise), raw fields.
- `velocity` (`velocity_config`, `velocity_timeline`, `velocity_entity`, `velocity_risk`): the incumbent's
  hand-crafted point-in-time features: windows, counterparties, pair novelty, label-delayed risk.
- `run`: `PretrainedRun`, the one loader of a pretraining run (model, tokenizer, data, digest).

Nothing here imports the service (`foundation.serving`) or the heads.
"""

from foundation.pointintime.batches import bucket_rows, canonical_rows, event_batch, event_rows, window_batch
from foundation.pointintime.encoder import PointInTimeEncoder, event_vectors, gather_windows, outcome_keys
from foundation.pointintime.features import (
    EVENT_ENTITY,
    ExampleStates,
    FeatureLayout,
    RawFieldLayout,
    RawFields,
    example_keys,
    example_states,
    raw_field_features,
    task_feature_matrix,
    task_features,
)
from foundation.pointintime.run import (
    PretrainedRun,
    aggregate_specs,
    locate_checkpoint,
    run_config,
    same_tokenizer,
)
from foundation.pointintime.states import AsOfStates, PointInTimeStates, SequenceStore, Shard, as_of_index
from foundation.pointintime.surprise import HEADS_FILE, EventSurprise, save_next_event_heads
from foundation.pointintime.velocity import VelocityConfig, VelocityFeatures, velocity_features
from foundation.pointintime.windows import WindowPlan, block_windows, plan_windows, window_start

__all__ = [
    "EVENT_ENTITY",
    "HEADS_FILE",
    "AsOfStates",
    "EventSurprise",
    "ExampleStates",
    "FeatureLayout",
    "PointInTimeEncoder",
    "PointInTimeStates",
    "PretrainedRun",
    "RawFieldLayout",
    "RawFields",
    "SequenceStore",
    "Shard",
    "VelocityConfig",
    "VelocityFeatures",
    "WindowPlan",
    "aggregate_specs",
    "as_of_index",
    "block_windows",
    "bucket_rows",
    "canonical_rows",
    "event_batch",
    "event_rows",
    "event_vectors",
    "example_keys",
    "example_states",
    "gather_windows",
    "locate_checkpoint",
    "outcome_keys",
    "plan_windows",
    "raw_field_features",
    "run_config",
    "same_tokenizer",
    "save_next_event_heads",
    "task_feature_matrix",
    "task_features",
    "velocity_features",
    "window_batch",
    "window_start",
]
