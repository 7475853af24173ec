"""Merchant descriptors: the text a cardholder sees, e.g. "SHELL OIL 5744" or "AMZN MKTP US*2K4".

Chains share a brand with a store number per location; marketplaces, ride-hailing and airlines show a
per-payment suffix (one of DESCRIPTOR_VARIANTS per merchant); small merchants appear behind processor
prefixes ("SQ *", "TST* "); names are truncated to what card networks carry.
"""

from __future__ import annotations

import string

import numpy as np
import pyarrow as pa

from foundation.data.synthetic.catalog import CATEGORIES, COUNTRIES, NAME_ADJECTIVES, NAME_NOUNS, POS_PREFIXES

DESCRIPTOR_VARIANTS = 24  # per-payment suffix variants of merchants like "AMZN MKTP US*2K4"
DESCRIPTOR_MAX_LEN = 25  # what card networks carry


def _descriptor(k: int, country: int, brand_slot: int, store: int, pick: np.ndarray, codes: list[str],
                tickets: np.ndarray) -> list[str]:
    """Descriptor variants of one merchant: chains show a store number, some show per-payment suffixes.

    Args:
        k, country: the merchant's category and country; brand_slot: index into the category's brands or -1.
        store: store number; pick: (6,) uniforms choosing name words, city and prefixes.
        codes: DESCRIPTOR_VARIANTS 3-character suffixes; tickets: (DESCRIPTOR_VARIANTS,) ticket numbers.
    """
    cat = CATEGORIES[k]

    def word(options: tuple[str, ...], u: float) -> str:
        return options[int(u * len(options))]

    name = f"{word(NAME_ADJECTIVES, pick[0])} {word(NAME_NOUNS, pick[1])} {word(cat.suffixes, pick[2])}"
    brand = cat.brands[brand_slot] if brand_slot >= 0 else None
    if cat.style == "web_suffix":
        return [f"{brand or name}*{code}" for code in codes]
    if cat.style == "ride" and brand:
        return [f"{brand} *TRIP {code}" for code in codes]
    if cat.style == "ticket":
        return [f"{brand or name} {t}" for t in tickets]
    if cat.style == "web":
        if brand:
            return [brand]
        return [f"PAYPAL *{name.replace(' ', '')}" if pick[4] < 0.3 else f"{name.replace(' ', '')}.COM"]
    if cat.style == "city":
        return [f"{brand or name} {word(COUNTRIES[country].cities, pick[3])}"]
    if cat.style == "fuel":
        return [f"{brand} {store:04d}" if brand else f"{name} {store % 100:02d}"]
    if cat.style == "pos" and not brand:
        return [f"{word(POS_PREFIXES, pick[5])}{name}"]
    return [f"{brand} #{store:04d}" if brand else name]


def merchant_descriptors(rng: np.random.Generator, cat: np.ndarray, country: np.ndarray,
                         cum_pop: np.ndarray) -> dict[str, np.ndarray | pa.Array]:
    """Descriptor strings of every merchant (chains share a brand; some merchants vary per payment).

    Args:
        rng: the world's descriptor stream.
        cat, country: (M,) category and country index of each merchant.
        cum_pop: (M,) cumulative popularity (the most popular merchants of a category carry its brands).

    Returns:
        `descriptor_offset` (M,), `descriptor_count` (M,) into `descriptors` (a pa.StringArray).
    """
    n = len(cat)
    popularity = np.diff(cum_pop, prepend=0.0)
    slot = np.full(n, -1)
    for k, c in enumerate(CATEGORIES):
        rows = np.nonzero(cat == k)[0]
        if not c.brands or not len(rows):
            continue
        if c.chain_share > 0:
            # Branches of chains: a Zipf choice of brand for a `chain_share` of the category's merchants.
            is_chain = rng.random(len(rows)) < c.chain_share
            zipf = 1.0 / np.arange(1, len(c.brands) + 1)
            brand = np.searchsorted(np.cumsum(zipf / zipf.sum()), rng.random(len(rows)), side="right")
            slot[rows[is_chain]] = np.minimum(brand[is_chain], len(c.brands) - 1)
        else:
            # One-merchant brands (AMZN MKTP, NETFLIX.COM): the most popular merchants carry them.
            top = rows[np.argsort(-popularity[rows], kind="stable")][: len(c.brands)]
            slot[top] = np.arange(len(top))
    stores = rng.integers(1, 10_000, n)
    picks = rng.random((n, 6))
    alphabet = np.array(list(string.ascii_uppercase + string.digits))
    chars = alphabet[rng.integers(0, len(alphabet), (n, DESCRIPTOR_VARIANTS, 3))]
    codes = np.char.add(np.char.add(chars[..., 0], chars[..., 1]), chars[..., 2]).tolist()
    tickets = rng.integers(10**9, 10**10, (n, DESCRIPTOR_VARIANTS))
    names: list[str] = []
    counts = np.empty(n, dtype=np.int64)
    for m in range(n):  # per merchant, once per world: cheap
        variants = _descriptor(int(cat[m]), int(country[m]), int(slot[m]), int(stores[m]), picks[m], codes[m],
                               tickets[m])
        counts[m] = len(variants)
        names.extend(v[:DESCRIPTOR_MAX_LEN] for v in variants)
    return dict(descriptor_offset=np.cumsum(counts) - counts, descriptor_count=counts,
                descriptors=pa.array(names, pa.string()))
