"""The training data pipeline: fcn_deploy datasets as torch batches, in a resumable order.

Preprocessing is the deployable one (:func:`fcn_deploy.preprocess.preprocess`: BGR minus mean,
CHW, no resizing), so a model trains on exactly what the runtimes feed it. The order of the
images (and which are mirrored) is a pure function of (seed, epoch), drawn in the main process,
so it does not depend on the number of worker processes, and a run can restart mid-epoch by
skipping the items it already consumed.
"""
from __future__ import annotations

import math
import signal
from dataclasses import dataclass, field
from functools import partial
from typing import Iterator, Sequence

import numpy as np
import torch

from fcn_deploy.constants import IGNORE_LABEL, VGG_MEAN_BGR
from fcn_deploy.errors import FCNError
from fcn_deploy.preprocess import preprocess, preprocess_modality


@dataclass
class LoadError:
    """A user error met while loading an item in a worker, carried to the main process as data.

    (An exception raised in a DataLoader worker reaches the main process with the worker's
    traceback pasted into its message; this keeps the user's message clean.)
    """

    message: str


@dataclass
class Batch:
    """``images`` float32 Nx3xHxW, ``labels`` uint8 NxHxW (padding = ignore label), ``names``;
    a multi-input set adds ``inputs`` {name: float32 NxCxHxW}, a multi-head set ``head_labels``
    {head: uint8 NxHxW} for the heads after the first."""

    images: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    head_labels: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)


class TorchSegmentation(torch.utils.data.Dataset):
    """A torch view of an fcn_deploy dataset; items are keyed ``(index, mirror)``.

    Returns ``(image float32 3xHxW, label uint8 HxW, name, inputs, labels)`` (numpy arrays;
    ``inputs`` {modality: float32 CxHxW} by :func:`~fcn_deploy.preprocess.preprocess_modality`,
    ``labels`` the other heads' uint8 HxW maps; both empty for a single-input, single-head set),
    or a :class:`LoadError` for a missing/corrupt file or an unlabelled image.
    """

    def __init__(self, dataset, *, mean: Sequence[float] = VGG_MEAN_BGR,
                 channel_order: str = "BGR") -> None:
        self.dataset = dataset
        self.mean = [float(m) for m in mean]
        self.channel_order = channel_order

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, mirror = key if isinstance(key, tuple) else (key, False)
        try:
            sample = self.dataset[index]
        except FCNError as exc:
            return LoadError(str(exc))
        if sample.label is None:
            return LoadError(f"image {sample.name} has no label; training and evaluation need "
                             "labelled images")
        image, label = sample.image, sample.label
        inputs, labels = dict(sample.inputs), dict(sample.labels)
        if mirror:
            image, label = image[:, ::-1], label[:, ::-1]
            inputs = {k: v[:, ::-1] for k, v in inputs.items()}
            labels = {k: v[:, ::-1] for k, v in labels.items()}
        try:
            x = preprocess(image, self.mean, channel_order=self.channel_order)
            inputs = {k: preprocess_modality(k, v) for k, v in inputs.items()}
        except FCNError as exc:
            return LoadError(f"image {sample.name}: {exc}")
        labels = {k: np.ascontiguousarray(v, dtype=np.uint8) for k, v in labels.items()}
        return x, np.ascontiguousarray(label, dtype=np.uint8), sample.name, inputs, labels


def collate(items: list, *, ignore_label: int = IGNORE_LABEL) -> Batch | LoadError:
    """Stack items into a :class:`Batch`, padding to the largest height and width.

    Images are padded with zeros (after mean subtraction, i.e. with the mean colour) and labels
    with ``ignore_label``, at the bottom and right, so padding never enters the loss. A batch of
    one is the image at its native size. The first :class:`LoadError` is passed on instead.
    """
    for item in items:
        if isinstance(item, LoadError):
            return item
    height = max(item[0].shape[1] for item in items)
    width = max(item[0].shape[2] for item in items)

    def stack(arrays: list[np.ndarray], fill: float, dtype: torch.dtype) -> torch.Tensor:
        lead = arrays[0].shape[:-2]
        out = torch.full((len(arrays), *lead, height, width), fill, dtype=dtype)
        for i, a in enumerate(arrays):
            out[i, ..., :a.shape[-2], :a.shape[-1]] = torch.from_numpy(a)
        return out

    first = items[0]
    return Batch(images=stack([item[0] for item in items], 0.0, torch.float32),
                 labels=stack([item[1] for item in items], ignore_label, torch.uint8),
                 names=[item[2] for item in items],
                 inputs={k: stack([item[3][k] for item in items], 0.0, torch.float32)
                         for k in first[3]},
                 head_labels={k: stack([item[4][k] for item in items], ignore_label, torch.uint8)
                              for k in first[4]})


class ResumableBatchSampler(torch.utils.data.Sampler):
    """Batches of ``(index, mirror)`` keys in an order fixed by ``(seed, epoch)``.

    ``set_epoch(epoch, start=k)`` makes the next iteration begin at the k-th item of that epoch's
    order, which is how training resumes mid-epoch. The last batch of an epoch may be smaller.
    With ``world_size`` > 1 the batches are shared out: counting the batches from ``start`` from
    ``offset`` (``set_epoch(..., offset=)``), this process takes those whose number is
    ``rank`` modulo ``world_size`` -- every rank reads the same order, no batch twice, none
    repeated to even the shares out.
    """

    def __init__(self, num_items: int, *, batch_size: int = 1, seed: int = 0,
                 shuffle: bool = True, mirror: bool = False, rank: int = 0,
                 world_size: int = 1) -> None:
        if num_items < 1:
            raise FCNError("the dataset is empty; expected at least one image")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.mirror = mirror
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start = 0
        self.offset = 0

    def set_epoch(self, epoch: int, *, start: int = 0, offset: int = 0) -> None:
        if not 0 <= start <= self.num_items:
            raise ValueError(f"start {start} outside 0..{self.num_items}")
        self.epoch, self.start, self.offset = epoch, start, offset

    def batches_from(self, start: int) -> int:
        """How many batches (of every rank) an epoch has from item ``start`` on."""
        return math.ceil((self.num_items - start) / self.batch_size)

    def advance(self, epoch: int, position: int, batches: int) -> tuple[int, int]:
        """``(epoch, position)`` after ``batches`` more batches (of every rank) from there.

        An epoch's end is left as ``position == num_items``; the next batch starts the next epoch.
        """
        for _ in range(batches):
            if position >= self.num_items:
                epoch, position = epoch + 1, 0
            position = min(position + self.batch_size, self.num_items)
        return epoch, position

    def order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """This epoch's item order and mirror flags."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.num_items) if self.shuffle else np.arange(self.num_items)
        flips = (rng.random(self.num_items) < 0.5) if self.mirror else np.zeros(self.num_items, bool)
        return order, flips

    def _mine(self, number: int) -> bool:
        return (self.offset + number) % self.world_size == self.rank

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        order, flips = self.order(self.epoch)
        for number, i in enumerate(range(self.start, self.num_items, self.batch_size)):
            if self._mine(number):
                stop = min(i + self.batch_size, self.num_items)
                yield [(int(order[j]), bool(flips[j])) for j in range(i, stop)]

    def __len__(self) -> int:
        return sum(self._mine(n) for n in range(self.batches_from(self.start)))


def _worker_init(_worker_id: int) -> None:
    # Ctrl-C is the main process's business: it finishes the iteration and saves a checkpoint.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(dataset: TorchSegmentation, sampler: ResumableBatchSampler, *, workers: int = 0,
                ignore_label: int = IGNORE_LABEL,
                pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over ``sampler``'s batches with ``workers`` processes (0: in the main process).

    It owns its generator, so creating iterators never draws from the global torch RNG (which
    dropout uses): a resumed run keeps exactly the random stream of an uninterrupted one.
    """
    if workers < 0:
        raise FCNError(f"--workers must be >= 0, got {workers}")
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers,
        collate_fn=partial(collate, ignore_label=ignore_label),
        persistent_workers=workers > 0, worker_init_fn=_worker_init if workers > 0 else None,
        generator=torch.Generator().manual_seed(sampler.seed), pin_memory=pin_memory)
