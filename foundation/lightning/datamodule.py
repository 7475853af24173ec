"""Pretraining data: encoded sequences (HF datasets, memory-mapped Arrow) -> homogeneous batches.

Each batch holds one entity type (a merchant batch has no issuer aggregate fields and vice versa). The plan of
an epoch (which type, which entities, which random crops) is a pure function of (seed, epoch, batch), so a run
resumed from an epoch-boundary checkpoint replays exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from foundation.data.collate import EventCollator


@dataclass(frozen=True)
class BatchPlan:
    """One planned batch: rows `indices` of the dataset of `entity_type`, crops drawn with `seed`."""

    entity_type: str
    indices: tuple[int, ...]
    seed: int


class EpochPlanSampler(Sampler[BatchPlan]):
    """Yields `batches_per_epoch` BatchPlans per epoch, deterministic in (seed, epoch); with several
    processes each rank takes every world_size-th batch of the same plan.

    Entity types are drawn in proportion to their number of events; entities within a type in proportion
    to their number of `max_len` windows, so long histories are seen more often but never dominate.
    """

    def __init__(
        self,
        lengths: dict[str, np.ndarray],
        batch_size: int,
        batches_per_epoch: int,
        max_len: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        fixed: bool = False,
    ) -> None:
        self.types = sorted(t for t, lens in lengths.items() if len(lens) > 0)
        if not self.types:
            raise ValueError("no sequences to sample from: every entity type is empty")
        events = np.array([float(lengths[t].sum()) for t in self.types])
        self.type_p = events / events.sum()
        self.row_p = {}
        for t in self.types:
            windows = np.ceil(lengths[t].astype(np.float64) / max_len)
            self.row_p[t] = windows / windows.sum()
        self.batch_size = batch_size
        self.batches_per_epoch = batches_per_epoch
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.fixed = fixed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        # A fixed sampler (validation) replays the same plan every epoch so losses are comparable.
        if not self.fixed:
            self.epoch = epoch

    def plan(self, epoch: int) -> list[BatchPlan]:
        rng = np.random.default_rng([self.seed, epoch])
        plans = []
        for b in range(self.batches_per_epoch * self.world_size):
            t = self.types[rng.choice(len(self.types), p=self.type_p)]
            p = self.row_p[t]
            size = min(self.batch_size, len(p))
            idx = rng.choice(len(p), size=size, replace=False, p=p)
            plans.append(BatchPlan(t, tuple(int(i) for i in np.sort(idx)), int(rng.integers(2**31)) ^ b))
        return plans

    def __iter__(self) -> Iterator[BatchPlan]:
        yield from self.plan(self.epoch)[self.rank :: self.world_size]

    def __len__(self) -> int:
        return self.batches_per_epoch


class PlannedBatches(Dataset):
    """Map-style dataset whose items are whole batches: BatchPlan -> collated tensors."""

    def __init__(self, encoded: dict[str, datasets.Dataset], collator_kwargs: dict) -> None:
        self.encoded = {t: ds.with_format("arrow") for t, ds in encoded.items()}
        self.collator_kwargs = collator_kwargs

    def __getitem__(self, plan: BatchPlan) -> dict[str, torch.Tensor]:
        table = self.encoded[plan.entity_type][list(plan.indices)]
        collate = EventCollator(**self.collator_kwargs, seed=plan.seed)
        return collate(table)

    def __len__(self) -> int:  # pragma: no cover - sampler drives iteration
        return sum(len(ds) for ds in self.encoded.values())


def holdout_mask(entity_ids: Sequence[str], fraction: float) -> np.ndarray:
    """True for entities held out for validation, by a stable hash of the id (same split on every run)."""
    if fraction <= 0:
        return np.zeros(len(entity_ids), dtype=bool)
    buckets = np.fromiter((zlib.crc32(str(e).encode()) % 10_000 for e in entity_ids), np.int64, len(entity_ids))
    return buckets < int(fraction * 10_000)


class PretrainDataModule(pl.LightningDataModule):
    """Batches for pretraining from encoded sequence datasets, one per entity type.

    Args:
        encoded: entity type -> encoded HF dataset (architecture.md section 4).
        tokenizer: the fitted EventTokenizer (exported with the model by the HFExport callback).
        batch_size: entities per batch (x views for contrastive objectives).
        max_len: window length (the model's max_position).
        min_len: shortest random crop for contrastive views.
        batches_per_epoch: planned batches per (virtual) epoch and per process.
        val_batches: validation batches (fixed plan).
        val_fraction: share of entities held out for validation, by id hash.
        views: sub-sequences per entity (2 for contrastive objectives).
        seed: base seed of every plan.
    """

    def __init__(
        self,
        encoded: dict[str, datasets.Dataset],
        tokenizer,
        batch_size: int = 32,
        max_len: int = 128,
        min_len: int = 16,
        batches_per_epoch: int = 200,
        val_batches: int = 20,
        val_fraction: float = 0.05,
        views: int = 1,
        seed: int = 0,
        num_workers: int = 0,
        entity_types: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        types = list(entity_types) if entity_types else sorted(encoded)
        unknown = sorted(set(types) - set(encoded))
        if unknown:
            raise ValueError(f"datamodule.entity_types: {unknown} not in the data (have {sorted(encoded)})")
        self.tokenizer = tokenizer
        self.batch_size, self.max_len, self.min_len = batch_size, max_len, min_len
        self.batches_per_epoch, self.val_batches = batches_per_epoch, val_batches
        self.views, self.seed, self.num_workers = views, seed, num_workers
        self.train_sets: dict[str, datasets.Dataset] = {}
        self.val_sets: dict[str, datasets.Dataset] = {}
        for t in types:
            held = holdout_mask(encoded[t]["entity_id"], val_fraction)
            self.train_sets[t] = encoded[t].select(np.flatnonzero(~held))
            self.val_sets[t] = encoded[t].select(np.flatnonzero(held))

    def _collator_kwargs(self, window: str) -> dict:
        return {
            "field_specs": self.tokenizer.field_specs(),
            "max_len": self.max_len,
            "min_len": self.min_len,
            "window": window,
            "views": self.views,
        }

    def _loader(
        self, sets: dict[str, datasets.Dataset], batches: int, seed: int, window: str, fixed: bool
    ) -> DataLoader:
        lengths = {t: np.asarray(ds["length"], dtype=np.int64) for t, ds in sets.items()}
        rank = self.trainer.global_rank if self.trainer else 0
        world = self.trainer.world_size if self.trainer else 1
        sampler = EpochPlanSampler(lengths, self.batch_size, batches, self.max_len, seed, rank, world, fixed)
        return DataLoader(
            PlannedBatches(sets, self._collator_kwargs(window)),
            sampler=sampler,
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_sets, self.batches_per_epoch, self.seed, "random", fixed=False)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_sets, self.val_batches, self.seed + 1, "random", fixed=True)
