"""The synthetic payments world: the embedded default dataset (see docs/guide/synthetic.md).

Customers (one card each), merchants and issuers exchange charges, declines, refunds and disputes, with
five planted behaviours only a sequence reveals: card testing, account takeover, compromised merchants,
issuer-specific decline rules, and customers running out of funds until payday.
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
