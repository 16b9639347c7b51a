"""Reading images and labels the way every stage expects them, with clear errors.

Images come back as uint8 HxWx3 **BGR** (OpenCV's order); labels as uint8 HxW class indices.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import atomic_path, atomic_write_bytes

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: A file with one of these suffixes lists image paths, one per line (relative to its folder).
LIST_EXTENSIONS = (".txt", ".lst")
_GLOB_CHARS = set("*?[")


def _list_file(path: Path) -> list[Path]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FCNError(f"list file {path} cannot be read ({exc})") from None
    entries = [line.strip() for line in lines]
    return [path.parent / e for e in entries if e and not e.startswith("#")]


def collect_images(paths: Sequence[str | os.PathLike], *, recursive: bool = False,
                   suffixes: Sequence[str] = ("",),
                   ) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Expand image files, folders, list files (.txt/.lst) and globs into ``(path, output stem)``
    pairs, plus ``(path, why)`` for inputs that are missing.

    Files in a folder keep their path relative to it (``sub/a.jpg`` -> ``sub/a``); a file given
    directly, listed or matched by a glob gets its stem. Each stem writes ``stem + suffix`` for
    every suffix; a stem whose files would clash with those of an earlier one (``x.jpg`` and
    ``x.png``; ``x.jpg`` and ``x_overlay.jpg`` with ``_overlay.png`` among the suffixes) gets
    ``_2``, ``_3``... The order is the inputs' order, folders and globs sorted, so every run names outputs alike.
    """
    import glob

    found: list[tuple[Path, str]] = []
    missing: list[tuple[Path, str]] = []
    used: set[str] = set()

    def add(path: Path, stem: str) -> None:
        unique, n = stem, 2
        while any(unique + s in used for s in suffixes):
            unique, n = f"{stem}_{n}", n + 1
        used.update(unique + s for s in suffixes)
        found.append((path, unique))

    for path in map(Path, paths):
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(f for f in path.glob(pattern)
                           if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            for f in files:
                add(f, f.relative_to(path).with_suffix("").as_posix())
        elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
            for entry in _list_file(path):
                if entry.is_file():
                    add(entry, entry.stem)
                else:
                    missing.append((entry, f"does not exist (listed in {path})"))
        elif path.is_file():
            add(path, path.stem)
        elif _GLOB_CHARS & set(str(path)):
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            matches = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_EXTENSIONS]
            if not matches:
                missing.append((path, "matches no image"))
            for m in matches:
                add(m, m.stem)
        else:
            missing.append((path, "does not exist"))
    return found, missing


def match_input_files(images: Sequence[tuple[Path, str]], folders: dict[str, Path]
                 ) -> tuple[list[tuple[Path, str]], dict[Path, dict[str, Path]],
                            list[tuple[Path, str]]]:
    """Each image's other inputs: the file in every input folder with the image's output stem
    (``sub/a`` -> ``DIR/sub/a.png``, any image extension). Returns the images that have all of
    them, {image: {input name: file}}, and (image, why) for those that miss one."""
    kept, matched, failed = [], {}, []
    for path, stem in images:
        found, why = {}, None
        for name, folder in folders.items():
            hits = [folder / f"{stem}{ext}" for ext in IMAGE_EXTENSIONS
                    if (folder / f"{stem}{ext}").is_file()]
            if len(hits) != 1:
                why = (f"no {name} input for it: expected {folder / stem}.png (or another image "
                       "extension)" if not hits else
                       f"{len(hits)} {name} inputs match it ({', '.join(map(str, hits))}); "
                       "expected one")
                break
            found[name] = hits[0]
        if why is None:
            kept.append((path, stem))
            matched[path] = found
        else:
            failed.append((path, why))
    return kept, matched, failed


def to_bgr8(image: np.ndarray, *, rgb: bool = False, name: str = "image") -> np.ndarray:
    """Convert an array as apps hold it into uint8 HxWx3 BGR, or say why it cannot be.

    Accepted: HxW grayscale, HxWx1, HxWx3 (BGR, or RGB with ``rgb=True``), HxWx4 (alpha dropped),
    uint8 or uint16 (16-bit is scaled down by 257). Anything else is refused with the reason.
    """
    if not isinstance(image, np.ndarray):
        raise FCNError(f"{name}: expected a numpy array HxWx3, got {type(image).__name__}")
    if image.size == 0 or image.ndim < 2 or min(image.shape[:2]) == 0:
        raise FCNError(f"{name}: the image is empty (shape {image.shape}); expected HxWx3 with H, W > 0")
    if image.dtype == np.uint16:
        image = (image.astype(np.uint32) // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise FCNError(f"{name}: pixel type {image.dtype} is not supported; expected uint8 or "
                       "uint16 (convert float images to 0..255 uint8 first)")
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise FCNError(f"{name}: shape {image.shape} is not an image; expected HxW, HxWx1, "
                       "HxWx3 or HxWx4")
    channels = image.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    image = image[:, :, :3]
    if rgb:
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


def jpeg_is_truncated(data: bytes | np.ndarray) -> bool:
    """True for a JPEG whose last scan has no end-of-image marker after it: a cut-off file.

    libjpeg decodes those with a warning, filling the missing part with grey; we refuse them
    in Python and C++ (the same rule), whatever the OpenCV version. Markers cannot occur inside
    scan data (0xFF is stuffed as FF 00), and an EXIF thumbnail's own end marker lies before the
    main image's last scan, so "an FFD9 after the last FFDA" is exact.
    """
    buf = bytes(data) if isinstance(data, np.ndarray) else data
    if buf[:2] != b"\xff\xd8":
        return False
    last_scan = buf.rfind(b"\xff\xda")
    # no scan at all: not an image the decoder can read either; it says so itself
    return last_scan >= 0 and buf.find(b"\xff\xd9", last_scan + 2) < 0


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 HxWx3 BGR, turned upright by its EXIF orientation.

    Grayscale, RGBA and 16-bit files are converted; a truncated JPEG is refused. An array the
    caller decoded itself (``cv2.imread``) is used as it is, so pass the path (or read with
    ``cv2.IMREAD_COLOR``, which also applies EXIF) to get what a photo viewer shows.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FCNError(f"image {path} does not exist")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise FCNError(f"image {path} cannot be read: {exc.strerror or exc}") from None
    except MemoryError:
        raise FCNError(f"image {path} ({path.stat().st_size} bytes) does not fit in memory") from None
    if data.size and jpeg_is_truncated(data):
        raise FCNError(f"image {path} is a truncated JPEG (no end-of-image marker after its last "
                       "scan); the file was cut off while copying or downloading")
    # Decoded as in the C++ runtime (cpp/src/image.cpp): any depth and colour layout (16-bit and
    # grayscale kept, converted by to_bgr8; alpha dropped) with the EXIF orientation applied, as
    # photo viewers show the picture (IMREAD_UNCHANGED alone would ignore the orientation).
    try:
        image = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR) if data.size else None
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):
            raise FCNError(f"image {path} has more pixels than OpenCV decodes (its limit, "
                           "2^30 by default, is set by the environment variable "
                           "OPENCV_IO_MAX_IMAGE_PIXELS); raise it if the machine has the "
                           "memory for this image") from None
        raise FCNError(f"image {path} could not be decoded: {str(exc).strip()[:300]}") from None
    except MemoryError:
        raise FCNError(f"image {path} does not fit in memory once decoded") from None
    if image is None:
        raise FCNError(f"image {path} could not be decoded; expected a readable image file "
                       f"({', '.join(IMAGE_EXTENSIONS)})")
    return to_bgr8(image, name=f"image {path}")


def read_depth(path: str | os.PathLike) -> np.ndarray:
    """Read a one-channel (8- or 16-bit) depth PNG as float32 HxW in the file's units."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FCNError(f"depth image {path} does not exist")
    data = np.fromfile(path, dtype=np.uint8)
    depth = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if depth is None:
        raise FCNError(f"depth image {path} could not be decoded; expected a 16-bit PNG")
    if depth.ndim != 2:
        raise FCNError(f"depth image {path} has shape {depth.shape}; expected one channel")
    return depth.astype(np.float32)


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Read a label PNG as uint8 HxW class indices (palette PNGs keep their indices)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FCNError(f"label {path} does not exist")
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L", "I", "I;16"):
                raise FCNError(f"label {path} has mode {img.mode}; expected a palette (P) or "
                               "grayscale (L) PNG of class indices")
            label = np.array(img)
    except (UnidentifiedImageError, OSError) as exc:
        raise FCNError(f"label {path} could not be decoded: {exc}") from None
    if label.dtype != np.uint8:
        if label.size and (label.min() < 0 or label.max() > 255):
            raise FCNError(f"label {path} has values outside 0..255")
        label = label.astype(np.uint8)
    return label


def write_label_png(path: str | os.PathLike, label: np.ndarray, palette) -> None:
    """Write a label map as a VOC-style palette PNG, atomically."""
    from PIL import Image

    flat = [v for rgb in palette for v in rgb][:768]
    flat += [0] * (768 - len(flat))
    img = Image.fromarray(np.asarray(label, dtype=np.uint8), mode="P")
    img.putpalette(flat)
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG")


def write_image(path: str | os.PathLike, image_bgr: np.ndarray) -> None:
    """Write a BGR image (format from the extension), atomically."""
    import cv2

    path = Path(path)
    try:
        ok, buf = cv2.imencode(path.suffix or ".png", image_bgr)
    except cv2.error as exc:  # e.g. an image beyond the encoder's size limits
        raise FCNError(f"could not encode {path}: {' '.join(str(exc).split())[:300]}") from None
    except MemoryError:
        raise FCNError(f"could not encode {path}: out of memory") from None
    if not ok:
        h, w = image_bgr.shape[:2]
        raise FCNError(f"could not encode {path} ({h}x{w} pixels); use .png or .jpg (JPEG and "
                       "WebP take at most 65500 pixels a side)")
    atomic_write_bytes(path, buf.tobytes())
