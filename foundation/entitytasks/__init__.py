"""Entity-level tasks: given an entity's history up to a date, what happens to it next.

Read in this order: `spec` (conf/task/<name>.yaml with `kind: entity`), `timeline` (window sums over an entity
type's events), `targets` (targets and the (entity, as-of) examples of each split), `aggregates` (the
hand-crafted baseline features), `heads` (binary/regression/multiclass heads), `metrics` (entity-clustered
bootstrap), `pipeline` (the run), `report`.
"""

from foundation.entitytasks.spec import EntityTaskSpec, Selection, TargetSpec, is_entity_task

__all__ = ["EntityTaskSpec", "Selection", "TargetSpec", "is_entity_task"]
