"""Data pipeline: preprocessing, mirroring, padding, deterministic resumable order, clean errors."""
import numpy as np
import pytest
import torch

from fcn_deploy.constants import VGG_MEAN_BGR
from fcn_deploy.datasets.base import Sample
from fcn_deploy.errors import FCNError
from training.data import (Batch, LoadError, ResumableBatchSampler, TorchSegmentation, collate,
                           make_loader)


class _ListDataset:
    """Images of sizes (h, w): pixel (i, j) of image k = (k, i, j) in B, G, R; label = j % 3."""

    def __init__(self, sizes, broken=()):
        self.sizes, self.broken = sizes, set(broken)

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, k):
        if k in self.broken:
            raise FCNError(f"image /data/img{k}.jpg is corrupt")
        h, w = self.sizes[k]
        ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        image = np.stack([np.full((h, w), k), ii, jj], axis=-1).astype(np.uint8)
        return Sample(image=image, label=(jj % 3).astype(np.uint8), name=f"img{k}")


def test_item_is_bgr_minus_mean_chw_and_mirroring_flips_both():
    ds = TorchSegmentation(_ListDataset([(3, 5)]))
    x, y, name, inputs, labels = ds[(0, False)]
    assert inputs == {} and labels == {}
    assert x.shape == (3, 3, 5) and x.dtype == np.float32 and name == "img0"
    assert x[2, 1, 4] == pytest.approx(4 - VGG_MEAN_BGR[2]) and x[1, 2, 0] == pytest.approx(2 - VGG_MEAN_BGR[1])
    xf, yf, *_ = ds[(0, True)]
    np.testing.assert_array_equal(xf, x[:, :, ::-1])
    np.testing.assert_array_equal(yf, y[:, ::-1])


def test_collate_pads_image_with_zeros_and_label_with_ignore():
    ds = TorchSegmentation(_ListDataset([(3, 5), (4, 2)]))
    batch = collate([ds[(0, False)], ds[(1, False)]])
    assert isinstance(batch, Batch) and batch.names == ["img0", "img1"]
    assert batch.images.shape == (2, 3, 4, 5) and batch.labels.shape == (2, 4, 5)
    assert torch.all(batch.images[0, :, 3, :] == 0) and torch.all(batch.images[1, :, :, 2:] == 0)
    assert torch.all(batch.labels[0, 3, :] == 255) and torch.all(batch.labels[1, :, 2:] == 255)
    assert batch.labels[1, 3, 1] == 1 and batch.images[1, 1, 3, 1] == pytest.approx(3 - VGG_MEAN_BGR[1])
    single = collate([ds[(1, False)]])
    assert single.images.shape == (1, 3, 4, 2)  # batch 1 keeps the native size


def test_load_errors_travel_as_data_with_the_datasets_message():
    ds = TorchSegmentation(_ListDataset([(2, 2), (2, 2)], broken=[1]))
    item = ds[(1, False)]
    assert item == LoadError("image /data/img1.jpg is corrupt")
    assert collate([ds[(0, False)], item]) is item


def test_sampler_order_depends_on_seed_and_epoch_and_resumes_mid_epoch():
    s = ResumableBatchSampler(10, batch_size=3, seed=5, mirror=True)
    s.set_epoch(0)
    epoch0 = [k for b in s for k in b]
    assert sorted(i for i, _ in epoch0) == list(range(10)) and len(s) == 4
    s.set_epoch(1)
    epoch1 = [k for b in s for k in b]
    assert epoch1 != epoch0
    assert any(f for _, f in epoch0) and not all(f for _, f in epoch0)
    s.set_epoch(0, start=6)
    assert [k for b in s for k in b] == epoch0[6:] and len(s) == 2
    again = ResumableBatchSampler(10, batch_size=3, seed=5, mirror=True)
    assert [k for b in again for k in b] == epoch0
    plain = ResumableBatchSampler(4, shuffle=False)
    assert list(plain) == [[(0, False)], [(1, False)], [(2, False)], [(3, False)]]
    with pytest.raises(FCNError, match="dataset is empty"):
        ResumableBatchSampler(0)


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_yields_the_same_batches_with_workers_and_leaves_global_rng(workers):
    sizes = [(4, 4), (3, 5), (5, 3), (2, 2), (4, 6)]
    ds = TorchSegmentation(_ListDataset(sizes))
    sampler = ResumableBatchSampler(len(sizes), batch_size=2, seed=1, mirror=True)
    loader = make_loader(ds, sampler, workers=workers)
    state = torch.get_rng_state()
    got = [(b.names, b.images.sum().item()) for b in loader]
    assert torch.equal(torch.get_rng_state(), state)
    expected = []
    for batch_keys in sampler:
        b = collate([ds[k] for k in batch_keys])
        expected.append((b.names, b.images.sum().item()))
    assert got == expected and len(got) == 3
