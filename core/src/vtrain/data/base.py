"""The dataset protocol the loop trains from, and the sampler that makes batches of one bucket.

Batch order is a pure function of (seed, epoch), so a resumed run can skip to the exact batch
it stopped at, and each rank takes a disjoint share of the same order.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class TrainDataset(Protocol):
    """What the loop needs from a dataset: indexable samples, each with a bucket key.

    Samples of one bucket can be stacked into a batch (same tensor shapes).
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...

    def bucket_of(self, index: int) -> Hashable:
        """The bucket key of sample ``index`` (for example ``"768x512@121"``)."""

    def describe(self) -> list[str]:
        """Lines for the start-up summary (datasets, buckets, sample counts)."""


@dataclass(frozen=True)
class BatchPlan:
    """The batches one rank draws in one epoch, as lists of sample indices."""

    batches: list[list[int]]


def plan_epoch(
    buckets: dict[Hashable, list[int]],
    batch_size: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    drop_incomplete: bool = True,
) -> BatchPlan:
    """Shuffle within buckets, cut into batches of one bucket, shuffle the batches, share by rank.

    Every rank computes the same global order and takes every ``world_size``-th batch, so ranks
    see different samples. The global batch count is trimmed to a multiple of ``world_size`` so
    all ranks take the same number of steps.
    """
    rng = random.Random(f"{seed}:{epoch}")
    batches: list[list[int]] = []
    for key in sorted(buckets, key=str):
        indices = list(buckets[key])
        rng.shuffle(indices)
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            if len(chunk) < batch_size and drop_incomplete:
                continue
            batches.append(chunk)
    rng.shuffle(batches)
    usable = len(batches) - len(batches) % world_size
    return BatchPlan(batches[rank:usable:world_size])


def group_by_bucket(dataset: TrainDataset) -> dict[Hashable, list[int]]:
    buckets: dict[Hashable, list[int]] = {}
    for index in range(len(dataset)):
        buckets.setdefault(dataset.bucket_of(index), []).append(index)
    return buckets


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors of one bucket; other values become lists."""
    import torch

    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [sample[key] for sample in samples]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        else:
            batch[key] = values
    return batch


def iterate_batches(dataset: TrainDataset, plan: BatchPlan, start: int = 0) -> Iterator[dict[str, Any]]:
    """Yield collated batches of ``plan`` from batch number ``start`` on (in the main process)."""
    for indices in plan.batches[start:]:
        yield collate([dataset[i] for i in indices])
