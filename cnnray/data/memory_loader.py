"""Batches sliced by index from uint8 tensors held in memory or on the device, sharded by rank."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from cnnray.data.rng import accepts_generator, epoch_generator


class MemoryLoader:
    """Iterate (x, y) batches of one rank's shard.

    Training (shuffle=True): each epoch a permutation from a generator seeded by (seed, epoch) is cut to a
    multiple of world_size (the < world_size leftover samples differ every epoch, so all are seen over
    epochs) and rank r takes perm[r::world_size]; with drop_last the partial last batch is dropped, so every
    rank yields the same number of batches (DDP needs that). Eval (shuffle=False, drop_last=False): rank r
    takes indices r::world_size, so the ranks together cover the split exactly once. The order depends only
    on (seed, epoch): resuming at epoch e repeats an uninterrupted run's order. Images are uint8 [N,C,H,W],
    moved to `device` once; a batch is an index_select there, then `transform` (given a generator seeded by
    (seed, epoch, rank) when it accepts one), else x stays uint8.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, rank: int = 0,
                 world_size: int = 1, seed: int = 0, shuffle: bool = True, drop_last: bool = True,
                 device: torch.device | str = torch.device("cpu"),
                 transform: Callable[..., torch.Tensor] | None = None) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"images ({images.shape[0]}) and labels ({labels.shape[0]}) differ in length")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.transform = transform
        self._tf_takes_generator = transform is not None and accepts_generator(transform)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order (and augmentation stream) the next iteration uses."""
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, in iteration order."""
        n = self.images.shape[0]
        if not self.shuffle:
            return torch.arange(self.rank, n, self.world_size)
        perm = torch.randperm(n, generator=epoch_generator(self.seed, self.epoch))
        return perm[: n - n % self.world_size][self.rank :: self.world_size]

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        n = self.images.shape[0]
        per_rank = n // self.world_size if self.shuffle else len(range(self.rank, n, self.world_size))
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self.indices().to(self.device)
        gen = epoch_generator(self.seed, self.epoch, stream=1 + self.rank)
        stop = len(self) * self.batch_size
        for start in range(0, min(stop, idx.numel()), self.batch_size):
            sel = idx[start : start + self.batch_size]
            x, y = self.images.index_select(0, sel), self.labels.index_select(0, sel)
            if self.transform is not None:
                x = self.transform(x, generator=gen) if self._tf_takes_generator else self.transform(x)
            yield x, y

