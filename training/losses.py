"""Per-pixel softmax cross-entropy as the reference nets train with it."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fcn_deploy.constants import IGNORE_LABEL


def segmentation_loss(scores: torch.Tensor, labels: torch.Tensor, *, normalize: bool,
                      ignore_label: int = IGNORE_LABEL) -> torch.Tensor:
    """Softmax cross-entropy of ``scores`` (NxCxHxW) against ``labels`` (NxHxW); ``ignore_label`` skipped.

    ``normalize=False`` (the reference VGG recipe, Caffe's ``normalize: false``): the loss of each
    image is the *sum* over its pixels, averaged over the images of the batch (at batch 1, the
    plain sum). ``normalize=True`` (FCN-AlexNet, the paper's section 4.3): the mean over all
    non-ignored pixels of the batch. A batch whose pixels are all ignored gives 0, never NaN.
    """
    if scores.dim() != 4 or labels.dim() != 3 or scores.shape[0] != labels.shape[0] \
            or scores.shape[2:] != labels.shape[1:]:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} "
                         "must be NxCxHxW and NxHxW with the same N, H, W")
    # Cross-entropy in float32 even under autocast: a sum over 250k pixels overflows float16.
    total = F.cross_entropy(scores.float(), labels.long(), ignore_index=ignore_label,
                            reduction="sum")
    if normalize:
        count = (labels != ignore_label).sum().clamp(min=1)
        return total / count
    return total / scores.shape[0]
