"""Tiny FCN-like graphs for the quantization tests, built once per session.

``TinyFCN`` has what matters for Q/DQ placement in the real nets: a padded first conv, ceil-mode
max pools, 1x1 score layers on two strides, fixed bilinear ConvTranspose upsampling (k4 s2,
diagonal), a skip Add and crops back to the input size. ``trained_tiny`` trains it for a few
seconds on SyntheticShapes so that accuracy changes mean something.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

# process_helpers (SIGTERM a command mid-run) lives with the runtime tests, as engine/ does it
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

torch = pytest.importorskip("torch")
nn = torch.nn

NUM_CLASSES = 4  # background + 3 shapes (SyntheticShapes num_classes)
TRAIN_SEED, CALIB_SEED, EVAL_SEED = 11, 12, 13
DATA_KW = dict(num_classes=NUM_CLASSES, min_size=40, max_size=72)


def bilinear_weight(channels: int, k: int) -> torch.Tensor:
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    og = np.ogrid[:k, :k]
    filt = (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)
    w = np.zeros((channels, channels, k, k), np.float32)
    w[range(channels), range(channels)] = filt
    return torch.from_numpy(w)


class TinyFCN(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 12):
        super().__init__()
        c = width
        self.conv1 = nn.Conv2d(3, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(c, 2 * c, 3, padding=1)
        self.pool2 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(2 * c, 2 * c, 3, padding=1)
        self.score_fr = nn.Conv2d(2 * c, num_classes, 1)
        self.score_pool1 = nn.Conv2d(c, num_classes, 1)
        self.upscore2 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, bias=False)
        self.upscore = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, bias=False)
        for up in (self.upscore2, self.upscore):
            up.weight.data.copy_(bilinear_weight(num_classes, 4))
            up.weight.requires_grad_(False)
        self.mean = [104.0, 117.0, 123.0]

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h))
        p1 = self.pool1(h)
        h = torch.relu(self.conv3(p1))
        h = torch.relu(self.conv4(self.pool2(h)))
        up2 = self.upscore2(self.score_fr(h))
        sp1 = self.score_pool1(p1)
        fused = up2[:, :, 1:1 + sp1.shape[2], 1:1 + sp1.shape[3]] + sp1
        up = self.upscore(fused)
        return up[:, :, 1:1 + x.shape[2], 1:1 + x.shape[3]]


def export_tiny(model: nn.Module, path: Path, *, num_classes: int = NUM_CLASSES,
                labels: bool = False, meta: bool = True) -> Path:
    """Export with dynamic batch/height/width and the toolkit's metadata."""
    import onnx

    from fcn_deploy.meta import ModelMeta, write_onnx_meta

    class WithLabels(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            s = self.inner(x)
            return s, torch.argmax(s, dim=1).to(torch.uint8)

    net = WithLabels(model).eval() if labels else model.eval()
    names = ["scores", "labels"] if labels else ["scores"]
    x = torch.randn(1, 3, 37, 45)
    dyn = {"image": {0: "batch", 2: "height", 3: "width"}}
    dyn.update({n: {0: "batch", (2 if n == "scores" else 1): "height",
                    (3 if n == "scores" else 2): "width"} for n in names})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(net, (x,), str(path), input_names=["image"], output_names=names,
                          dynamo=False, dynamic_axes=dyn, opset_version=18)
    proto = onnx.load(str(path))
    if meta:
        m = ModelMeta.default("tiny_fcn", num_classes, outputs="both" if labels else "scores",
                              mean=list(getattr(model, "mean", [104.0, 117.0, 123.0])))
        write_onnx_meta(proto, m)
    onnx.save(proto, str(path))
    return path


def _train(model: nn.Module, steps: int = 160) -> nn.Module:
    from fcn_deploy.datasets import SyntheticShapes
    from fcn_deploy.preprocess import preprocess

    data = SyntheticShapes(num_images=64, seed=TRAIN_SEED, **DATA_KW)
    items = [(torch.from_numpy(preprocess(s.image, model.mean))[None],
              torch.from_numpy(s.label.astype(np.int64))[None]) for s in data]
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one thread trains several times faster here
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=3e-3)
    loss_fn = nn.CrossEntropyLoss(ignore_index=255)
    model.train()
    for step in range(steps):
        x, y = items[step % len(items)]
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("quantize")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_dir) -> Path:
    """An untrained TinyFCN graph with metadata (scores output only)."""
    torch.manual_seed(1)
    return export_tiny(TinyFCN(), tiny_dir / "tiny_fp32.onnx")


@pytest.fixture(scope="session")
def trained_tiny(tiny_dir) -> Path:
    """TinyFCN trained for a few seconds on SyntheticShapes; scores and labels outputs."""
    torch.manual_seed(2)
    model = _train(TinyFCN())
    return export_tiny(model, tiny_dir / "trained_fp32.onnx", labels=True)


@pytest.fixture()
def calib_images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            for h, w in [(33, 41), (48, 48), (61, 37), (40, 70)]]
