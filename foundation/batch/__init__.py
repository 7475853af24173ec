"""The batch contract: the keys, shapes and dtypes every consumer of a model batch relies on.

`foundation.data.collate` produces a batch, `foundation.model` and `foundation.objectives` read it, and
`foundation.pointintime` builds single-event and window batches of the same layout for the service. This
package sits below all of them, so none needs to import another to agree on the layout.

A batch is `dict[str, torch.Tensor]`, right-padded (B entities or windows, T events, K text tokens):

| key | shape | dtype |
|---|---|---|
| `entity_type` | (B,) | long |
| `lengths` | (B,) | long: real events per row |
| `attention_mask` | (B, T) | bool, True on real events |
| `event_time` | (B, T) | long, epoch ms |
| `time_gap_bin`, `hour`, `dow`, `<categorical>`, `<numeric>_bin` | (B, T) | long, 0 = padding |
| `time_gap`, `<numeric>_value` | (B, T) | float32 |
| `<text>_tokens` | (B, T, K) | long |
| `label_<name>` | (B, T) | float32, NaN = unknown (optional) |
| `entity_index` | (B,) | long: rows with the same value are views of one entity (contrastive) |

`fields`: which keys each encoded field carries (`FieldSpec.keys`); `outputs`: what the encoder returns.
"""

from foundation.batch.fields import (
    DOW_VOCAB_SIZE,
    FIELD_KINDS,
    HOUR_VOCAB_SIZE,
    TIME_KEYS,
    FieldSpec,
    parse_field_specs,
)
from foundation.batch.outputs import FoundationModelOutput

__all__ = [
    "DOW_VOCAB_SIZE",
    "FIELD_KINDS",
    "HOUR_VOCAB_SIZE",
    "TIME_KEYS",
    "FieldSpec",
    "FoundationModelOutput",
    "parse_field_specs",
]
