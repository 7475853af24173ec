"""One block of customers from first draw to written rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from foundation.data.synthetic.activity import purchases, subscriptions, travel
from foundation.data.synthetic.attempts import Attempts
from foundation.data.synthetic.authorization import authorize
from foundation.data.synthetic.catalog import EVENT_TYPES
from foundation.data.synthetic.config import SyntheticConfig
from foundation.data.synthetic.customers import draw_customers
from foundation.data.synthetic.followups import followups
from foundation.data.synthetic.fraud import card_testing, compromise, takeover
from foundation.data.synthetic.sequence_fraud import dormant, replay, sorted_purchases
from foundation.data.synthetic.table import assemble, event_kinds
from foundation.data.synthetic.world import World


@dataclass
class BlockResult:
    """Rows of one block and the counts the generation summary adds up."""

    table: pa.Table
    type_counts: np.ndarray  # (4,) events per catalog.EVENT_TYPES
    n_fraud_attempts: int


def simulate_block(config: SyntheticConfig, world: World, block: int, first_event_id: int) -> BlockResult:
    """Simulate block `block`: customers, legitimate activity, planted fraud, issuer decisions, follow-ups.

    Args:
        config: generator config.
        world: `build_world(config)`.
        block: block index (customers `[block * block_customers, ...)`).
        first_event_id: event id of the block's first row (ids are consecutive over blocks).

    Returns:
        The block's table (sorted by card_id, ts) and its counts.
    """
    cb = draw_customers(config, world, block)
    legit = Attempts.concat([purchases(config, world, cb), subscriptions(config, world, cb),
                             travel(config, world, cb)])
    bought = sorted_purchases(legit)
    fraud = [card_testing(config, world, cb), takeover(config, world, cb), compromise(config, world, cb, legit),
             replay(config, world, cb, bought), dormant(config, world, cb, bought)]
    att = Attempts.concat([legit, *fraud]).sorted()
    code = authorize(config, world, cb, att)
    follow = followups(config, world, cb, att, code)
    table = assemble(config, world, cb, att, code, follow, first_event_id)
    counts = np.bincount(event_kinds(att, code, follow), minlength=len(EVENT_TYPES))
    return BlockResult(table=table, type_counts=counts, n_fraud_attempts=int(att.fraud.sum()))
