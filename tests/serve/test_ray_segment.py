"""fcn-segment --ray on a local Ray (2 CPUs): the same files as the local fcn-segment, byte for byte."""
from __future__ import annotations

import cv2
import pytest

from fcn_deploy.cli.segment import main as segment_main
from fcn_deploy.cli.segment_ray import normalize_ray_argv
from fcn_deploy.errors import FCNError
from fcn_deploy.runtime.outputs import SegmentOutputs
from fcn_deploy.serve.ray_segment import RaySegmentOptions, looks_like_ray_address, ray_segment
from runtime_fixtures import make_tiny_onnx, random_image, tiny_meta

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray for the module (2 CPUs, 80 MB object store, no dashboard)."""
    ray.init(num_cpus=2, object_store_memory=80 * 1024 * 1024, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    model = make_tiny_onnx(root / "tiny.onnx", num_classes=5, seed=4)
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    for i, (h, w) in enumerate([(30, 40), (41, 33), (25, 25), (36, 48)]):
        cv2.imwrite(str(images / f"im{i}.png"), random_image(h, w, seed=i))
    cv2.imwrite(str(images / "sub" / "deep.jpg"), random_image(28, 30, seed=9))
    (images / "broken.png").write_bytes(b"not an image")
    extra = root / "extra"
    extra.mkdir()
    for i in range(3):
        cv2.imwrite(str(extra / f"x{i}.png"), random_image(20 + i, 22, seed=30 + i))
    (root / "list.txt").write_text("# two of the extras\nextra/x0.png\n\nextra/x2.png\n")
    return {"root": root, "model": model, "images": images, "extra": extra}


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_ray_output_is_byte_identical_to_the_local_run(local_ray, data, tmp_path):
    inputs = [str(data["images"]), str(data["root"] / "list.txt"), str(data["extra"] / "x1.*")]
    # --threads 1: the actors' thread count (1 CPU each), so both runs use the same kernels
    common = ["--engine", str(data["model"]), *inputs, "--overlay", "--scores", "--recursive",
              "--threads", "1"]
    assert segment_main(common + ["-o", str(tmp_path / "local")]) == 1  # broken.png
    assert segment_main(["--ray", *common, "-o", str(tmp_path / "ray"), "--actors", "2",
                         "--batch-size", "2"]) == 1
    local, remote = _files(tmp_path / "local"), _files(tmp_path / "ray")
    # 4 top-level + sub/deep + 3 listed/globbed images, three files each
    assert len(local) == 8 * 3 and "sub/deep.png" in local and "x1_overlay.png" in local
    assert sorted(local) == sorted(remote)
    for name in local:
        assert local[name] == remote[name], name


def test_resume_skips_done_images_and_redoes_missing_ones(local_ray, data, tmp_path):
    options = RaySegmentOptions(model=data["model"], outputs=SegmentOutputs(overlay=True),
                                actors=1, progress=False)
    first = ray_segment([data["extra"]], tmp_path, options)
    assert sorted(stem for _, stem in first.done) == ["x0", "x1", "x2"] and not first.failed
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    (tmp_path / "x1_overlay.png").unlink()  # x1 is incomplete now
    second = ray_segment([data["extra"]], tmp_path, options)
    assert [stem for _, stem in second.done] == ["x1"]
    assert sorted(stem for _, stem in second.skipped) == ["x0", "x2"]
    for name in ("x0.png", "x0_overlay.png", "x2.png"):
        assert (tmp_path / name).stat().st_mtime_ns == stamps[name]
    # nothing left to do: Ray is not even needed
    third = ray_segment([data["extra"]], tmp_path, options)
    assert not third.done and len(third.skipped) == 3


def test_errors_are_fcn_errors(local_ray, data, tmp_path):
    with pytest.raises(FCNError, match=r"model file .*missing.onnx does not exist"):
        ray_segment([data["extra"]], tmp_path, RaySegmentOptions(model=data["root"] / "missing.onnx"))
    with pytest.raises(FCNError, match=r"x0.png is also the image .*would destroy that input"):
        ray_segment([data["extra"]], data["extra"], RaySegmentOptions(model=data["model"]))
    with pytest.raises(FCNError, match=r"actors must be >= 1, got 0"):
        RaySegmentOptions(model=data["model"], actors=0)
    # A pool the cluster cannot hold would wait forever: refused up front.
    with pytest.raises(FCNError, match=r"3 actors x 1 CPU need 3 CPUs; the Ray cluster has 2"):
        ray_segment([data["extra"]], tmp_path / "p", RaySegmentOptions(model=data["model"],
                                                                         actors=3))
    with pytest.raises(FCNError, match=r"1 actors x 1 GPU need 1 GPUs; the Ray cluster has 0"):
        ray_segment([data["extra"]], tmp_path / "q", RaySegmentOptions(model=data["model"],
                                                                         num_gpus=1))
    # An artifact that is no ONNX file: its metadata is read by the driver, before Ray runs.
    bad = data["root"] / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(FCNError, match=r"bad.onnx is not a readable ONNX file"):
        ray_segment([data["extra"]], tmp_path / "o", RaySegmentOptions(model=bad, progress=False))
    assert not (tmp_path / "o").exists()
    # One with metadata that no actor can open (an op ONNX Runtime does not know) stops the run
    # with the actor's message.
    import onnx

    proto = onnx.load(str(data["model"]))
    next(n for n in proto.graph.node if n.op_type == "Relu").op_type = "NoSuchOp"
    broken = data["root"] / "broken_graph.onnx"
    onnx.save(proto, str(broken))
    with pytest.raises(FCNError, match=r"Ray segmentation failed: ONNX Runtime could not load "
                                       r".*broken_graph.onnx: .*NoSuchOp"):
        ray_segment([data["extra"]], tmp_path / "o", RaySegmentOptions(model=broken,
                                                                        progress=False))


def test_ray_only_options_need_ray(data, tmp_path, capsys):
    rc = segment_main(["--engine", str(data["model"]), str(data["extra"]), "-o", str(tmp_path),
                       "--actors", "2"])
    assert rc == 2 and "error: --actors applies to --ray only" in capsys.readouterr().err


def test_ray_address_or_first_input(tmp_path, monkeypatch):
    assert normalize_ray_argv(["--ray", "photos/", "-o", "o"]) == ["--ray=", "photos/", "-o", "o"]
    assert normalize_ray_argv(["--ray", "auto", "photos/"]) == ["--ray", "auto", "photos/"]
    assert looks_like_ray_address("ray://head:10001") and looks_like_ray_address("10.0.0.5:6379")
    assert not looks_like_ray_address("imgs/*.jpg")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "host:1").write_text("")  # a file of that name is an input, not an address
    assert not looks_like_ray_address("host:1")


def test_ray_checks_the_run_files_as_fcn_segment_does(data, tmp_path):
    """Refused before Ray starts: outputs under a folder read --recursive (the next run would
    segment its own masks) and a hard link of an input, which comparing paths missed."""
    options = RaySegmentOptions(model=data["model"], recursive=True)
    with pytest.raises(FCNError, match=r"would be written under the input folder"):
        ray_segment([data["images"]], data["images"] / "sub" / "out", options)
    assert not (data["images"] / "sub" / "out").exists()
    out = tmp_path / "out"
    out.mkdir()
    (out / "x0.png").hardlink_to(data["extra"] / "x0.png")
    with pytest.raises(FCNError, match=r"x0.png is also the image .*x0.png"):
        ray_segment([data["extra"]], out, RaySegmentOptions(model=data["model"]))


def test_ray_actors_segment_with_the_tile_options(tmp_path):
    """--tile/--max-pixels reach the actors' predict (they were dropped: images ran whole)."""
    from fcn_deploy.serve.ray_segment import SegmentActor

    model = make_tiny_onnx(tmp_path / "tiled.onnx", meta=tiny_meta(
        tiling={"stride": 1, "context_before": 1, "context_after": 1}))
    cv2.imwrite(str(tmp_path / "a.png"), random_image(30, 40, seed=1))
    batch = {"path": [str(tmp_path / "a.png")], "stem": ["a"]}

    def run(out, **tile_options):
        actor = SegmentActor(model=str(model), backend=None, device=None, options={},
                             outputs=SegmentOutputs(), out_dir=str(tmp_path / out),
                             **tile_options)
        (tmp_path / out).mkdir()
        return list(actor(batch)["error"])

    assert run("whole") == [""]
    assert run("tiled", tile=8) == [""]
    whole, tiled = (tmp_path / out / "a.png" for out in ("whole", "tiled"))
    assert tiled.read_bytes() == whole.read_bytes()
    error, = run("refused", max_pixels=1)
    assert "max_pixels 1 is too small to tile this model" in error


@pytest.fixture(scope="module")
def multi_io(tmp_path_factory):
    """A two-head net (SIFT Flow) and an image + depth net (NYUDv2), with colour images and,
    for all but the last image, a 16-bit depth PNG of the same stem."""
    pytest.importorskip("torch")
    from runtime_fixtures import make_multi_io_net, random_inputs_for

    root = tmp_path_factory.mktemp("ray_multi_io")
    nets = {arch: make_multi_io_net(root, arch)
            for arch in ("siftflow_fcn16s", "nyud_fcn32s_color_d")}
    images, depth = root / "images", root / "depth"
    images.mkdir()
    depth.mkdir()
    meta = nets["nyud_fcn32s_color_d"][1]
    for i, (h, w) in enumerate([(96, 96), (80, 100), (90, 72)]):
        data = random_inputs_for(meta, h, w, seed=11 + i)
        cv2.imwrite(str(images / f"im{i}.png"), data["image"])
        if i < 2:
            cv2.imwrite(str(depth / f"im{i}.png"), data["depth"])  # uint16 millimetres
    return {"root": root, "images": images, "depth": depth,
            "siftflow_fcn16s.pt": nets["siftflow_fcn16s"][2],
            **{arch: net[3] for arch, net in nets.items()}}


def test_the_driver_reads_heads_and_inputs_from_the_artifact(multi_io, tmp_path):
    """ONNX props, a plan's sidecar, a checkpoint's meta; for an ONNX without loading torch."""
    import subprocess
    import sys

    from fcn_deploy.engine.cuda import GpuInfo
    from fcn_deploy.engine.profiles import Profile
    from fcn_deploy.engine.sidecar import EngineInfo, write_sidecar
    from fcn_deploy.onnxgraph import read_meta
    from fcn_deploy.serve.ray_segment import read_model_meta

    for model in (multi_io["siftflow_fcn16s"], multi_io["siftflow_fcn16s.pt"]):
        meta = read_model_meta(str(model))
        assert [h.name for h in meta.head_specs()] == ["sem", "geo"]
        assert meta.input_names == ["image"]
    rgbd = read_model_meta(str(multi_io["nyud_fcn32s_color_d"]))
    assert rgbd.input_names == ["image", "depth"] and not rgbd.multi_head
    plan = tmp_path / "rgbd.plan"
    plan.write_bytes(b"only the sidecar is read")
    write_sidecar(plan, EngineInfo(
        trt_version="10.16.1.11", gpu=GpuInfo("NVIDIA H100", "9.0"),
        profiles=[Profile((1, 3, 64, 64), (1, 3, 128, 128), (2, 3, 256, 256))],
        precision="fp32", onnx_sha256="ab" * 32, meta=rgbd.to_dict(), outputs=["labels"],
        inputs=[{"name": "image", "shape": ["batch", 3, "height", "width"]},
                {"name": "depth", "shape": ["batch", 1, "height", "width"]}]))
    assert read_model_meta(str(plan)) == read_meta(multi_io["nyud_fcn32s_color_d"])
    with pytest.raises(FCNError, match=r"net.bin: expected an .onnx, a TensorRT plan"):
        read_model_meta(str(tmp_path / "net.bin"))
    code = ("import sys; from fcn_deploy.serve.ray_segment import read_model_meta; "
            f"m = read_model_meta({str(multi_io['siftflow_fcn16s'])!r}); "
            "print(m.arch, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert out == ["siftflow_fcn16s", "False"]


def test_ray_two_head_net_writes_every_heads_files_as_the_local_run(local_ray, multi_io,
                                                                   tmp_path):
    common = ["--engine", str(multi_io["siftflow_fcn16s"]), str(multi_io["images"]),
              "--overlay", "--scores", "--threads", "1"]
    assert segment_main(common + ["-o", str(tmp_path / "local")]) == 0
    assert segment_main(["--ray", *common, "-o", str(tmp_path / "ray"), "--actors", "2",
                         "--batch-size", "2"]) == 0
    local, remote = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert sorted(local) == sorted(f"im{i}_{head}{suffix}" for i in range(3)
                                   for head in ("sem", "geo")
                                   for suffix in (".png", "_overlay.png", "_scores.npy"))
    assert sorted(remote) == sorted(local)
    for name in local:
        assert local[name] == remote[name], name
    # resume: an image is done only when every head's files exist; only im1 is redone
    (tmp_path / "ray" / "im1_geo_scores.npy").unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray").iterdir()}
    report = ray_segment([multi_io["images"]], tmp_path / "ray", RaySegmentOptions(
        model=multi_io["siftflow_fcn16s"], threads=1, progress=False,
        outputs=SegmentOutputs(overlay=True, scores=True)))
    assert [stem for _, stem in report.done] == ["im1"]
    assert sorted(stem for _, stem in report.skipped) == ["im0", "im2"]
    assert _files(tmp_path / "ray") == local
    for name, stamp in stamps.items():
        if not name.startswith("im1_"):
            assert (tmp_path / "ray" / name).stat().st_mtime_ns == stamp, name


def test_ray_two_input_net_takes_its_other_input_as_the_local_run(local_ray, multi_io,
                                                                  tmp_path, capsys):
    common = ["--engine", str(multi_io["nyud_fcn32s_color_d"]), str(multi_io["images"]),
              "--input", f"depth={multi_io['depth']}", "--overlay", "--threads", "1"]
    assert segment_main(common + ["-o", str(tmp_path / "local")]) == 1  # im2 has no depth
    capsys.readouterr()
    assert segment_main(["--ray", *common, "-o", str(tmp_path / "ray"), "--actors", "2",
                         "--batch-size", "1"]) == 1
    err = capsys.readouterr().err
    assert f"error: {multi_io['images'] / 'im2.png'}: no depth input for it: expected " \
           f"{multi_io['depth'] / 'im2'}.png" in err
    local, remote = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert sorted(local) == ["im0.png", "im0_overlay.png", "im1.png", "im1_overlay.png"]
    assert sorted(remote) == sorted(local)
    for name in local:
        assert local[name] == remote[name], name
    # without its depth folder, the net is refused by the driver, naming what it takes
    with pytest.raises(FCNError, match=r"nyud_fcn32s_color_d.onnx \(nyud_fcn32s_color_d\) takes "
                                       r"its other inputs depth \(--input depth=DIR\); got no "
                                       r"--input"):
        ray_segment([multi_io["images"]], tmp_path / "none",
                    RaySegmentOptions(model=multi_io["nyud_fcn32s_color_d"]))
    with pytest.raises(FCNError, match=r"siftflow_fcn16s\) takes no input besides the images; "
                                       r"got --input depth="):
        ray_segment([multi_io["images"]], tmp_path / "none", RaySegmentOptions(
            model=multi_io["siftflow_fcn16s"], input_folders={"depth": multi_io["depth"]}))
    assert not (tmp_path / "none").exists()


def test_ray_actor_refuses_a_model_other_than_the_planned_one(multi_io, tmp_path):
    """An actor that opens a net with other heads or inputs than the driver planned for (a
    served model replaced meanwhile) refuses it rather than writing unplanned files."""
    from fcn_deploy.serve.ray_segment import SegmentActor

    with pytest.raises(FCNError, match=r"siftflow_fcn16s.onnx has the heads sem, geo and the "
                                       r"inputs image; the run was planned for heads \(one\) and "
                                       r"inputs image"):
        SegmentActor(model=str(multi_io["siftflow_fcn16s"]), backend=None, device=None,
                     options={}, outputs=SegmentOutputs(), out_dir=str(tmp_path))
    with pytest.raises(FCNError, match=r"has the heads score and the inputs image, depth; the run "
                                       r"was planned for heads \(one\) and inputs image$"):
        SegmentActor(model=str(multi_io["nyud_fcn32s_color_d"]), backend=None, device=None,
                     options={}, outputs=SegmentOutputs(), out_dir=str(tmp_path))
