"""The synthetic payments world: the embedded default dataset (see docs/guide/synthetic.md).

Customers (one card each), merchants and issuers exchange charges, declines, refunds and disputes, with
seven planted behaviours only a sequence reveals: card testing, account takeover, compromised merchants,
replayed purchases, dormant cards waking up in new categories, issuer-specific decline rules, and customers
running out of funds until payday. Fraudulent attempts carry their pattern in `fraud_pattern` (a label).
"""

from foundation.data.synthetic.config import SyntheticConfig, config_hash, synthetic_config
from foundation.data.synthetic.table import EVENT_SCHEMA
from foundation.data.synthetic.world import World, build_world
from foundation.data.synthetic.writer import (
    GenerationSummary,
    ensure_synthetic,
    generate,
    is_current,
    read_manifest,
    resolve_config,
    write_synthetic,
)

__all__ = [
    "EVENT_SCHEMA",
    "GenerationSummary",
    "SyntheticConfig",
    "World",
    "build_world",
    "config_hash",
    "ensure_synthetic",
    "generate",
    "is_current",
    "read_manifest",
    "resolve_config",
    "synthetic_config",
    "write_synthetic",
]
