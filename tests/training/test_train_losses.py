"""The per-pixel loss, checked against sums written out by hand."""
import math

import pytest
import torch

from training.losses import segmentation_loss


def _log_softmax_at(scores, n, c, i, j):
    column = scores[n, :, i, j]
    return (column[c] - torch.logsumexp(column, 0)).item()


@pytest.fixture
def tiny():
    # 2 images, 3 classes, 2x2 pixels; one ignored pixel in image 0, two in image 1.
    scores = torch.tensor([
        [[[1.0, 0.0], [2.0, -1.0]], [[0.5, 1.5], [0.0, 0.0]], [[-1.0, 0.2], [1.0, 3.0]]],
        [[[0.0, 0.0], [0.0, 0.0]], [[2.0, -2.0], [1.0, 0.0]], [[0.3, 0.1], [-0.5, 4.0]]],
    ])
    labels = torch.tensor([[[0, 1], [255, 2]], [[1, 255], [2, 255]]], dtype=torch.uint8)
    return scores, labels


def _by_hand(scores, labels):
    per_image, count = [0.0, 0.0], 0
    for n in range(2):
        for i in range(2):
            for j in range(2):
                c = int(labels[n, i, j])
                if c != 255:
                    per_image[n] -= _log_softmax_at(scores, n, c, i, j)
                    count += 1
    return per_image, count


def test_summed_loss_is_the_per_image_sum_averaged_over_images(tiny):
    scores, labels = tiny
    per_image, _ = _by_hand(scores, labels)
    loss = segmentation_loss(scores, labels, normalize=False)
    assert loss.item() == pytest.approx(sum(per_image) / 2, rel=1e-6)
    # batch 1 (the reference recipe): the plain sum over the image's pixels
    one = segmentation_loss(scores[:1], labels[:1], normalize=False)
    assert one.item() == pytest.approx(per_image[0], rel=1e-6)


def test_normalized_loss_is_the_mean_over_non_ignored_pixels(tiny):
    scores, labels = tiny
    per_image, count = _by_hand(scores, labels)
    assert count == 5
    loss = segmentation_loss(scores, labels, normalize=True)
    assert loss.item() == pytest.approx(sum(per_image) / count, rel=1e-6)


def test_ignored_pixels_get_no_gradient(tiny):
    scores, labels = tiny
    scores = scores.clone().requires_grad_(True)
    segmentation_loss(scores, labels, normalize=False).backward()
    grad = scores.grad
    assert torch.all(grad[0, :, 1, 0] == 0) and torch.all(grad[1, :, 0, 1] == 0)
    assert torch.all(grad[0, :, 0, 0] != 0)


@pytest.mark.parametrize("normalize", [False, True])
def test_all_ignored_gives_zero_not_nan(normalize):
    scores = torch.randn(1, 4, 3, 3, requires_grad=True)
    labels = torch.full((1, 3, 3), 255, dtype=torch.uint8)
    loss = segmentation_loss(scores, labels, normalize=normalize)
    loss.backward()
    assert loss.item() == 0.0 and not math.isnan(loss.item())
    assert torch.all(scores.grad == 0)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="same N, H, W"):
        segmentation_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 5, dtype=torch.uint8),
                          normalize=True)
