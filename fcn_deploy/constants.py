"""Reference constants of the FCN paper and PASCAL VOC."""
from __future__ import annotations

#: PASCAL VOC classes in label order (label 0 is background).
VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

#: PASCAL-Context's 59-class task plus background, in the output order of the reference's
#: pascalcontext-fcn nets (fcn.berkeleyvision.org data/pascal-context/classes-59.txt).
PASCAL_CONTEXT_59_CLASSES: tuple[str, ...] = VOC_CLASSES + (
    "bag", "bed", "bench", "book", "building", "cabinet", "ceiling", "clothes", "computer", "cup",
    "door", "fence", "floor", "flower", "food", "grass", "ground", "keyboard", "light",
    "mountain", "mouse", "curtain", "platform", "sign", "plate", "road", "rock", "shelves",
    "sidewalk", "sky", "snow", "bedcloth", "track", "tree", "truck", "wall", "water", "window",
    "wood",
)

#: Per-channel mean subtracted by the reference nets, in **BGR** order (Caffe's ImageNet mean).
VGG_MEAN_BGR: tuple[float, float, float] = (104.00698793, 116.66876762, 122.67891434)

#: Label value excluded from the loss and from scoring.
IGNORE_LABEL = 255


#: SIFT Flow's 33 semantic classes (Liu et al.), in label order 1..33 (0 = void, ignored).
SIFTFLOW_CLASSES: tuple[str, ...] = (
    "awning", "balcony", "bird", "boat", "bridge", "building", "bus", "car", "cow", "crosswalk",
    "desert", "door", "fence", "field", "grass", "moon", "mountain", "person", "plant", "pole",
    "river", "road", "rock", "sand", "sea", "sidewalk", "sign", "sky", "staircase",
    "streetlight", "sun", "tree", "window",
)
#: SIFT Flow's 3 geometric classes, label order 1..3 (-1 = void, ignored).
SIFTFLOW_GEO_CLASSES: tuple[str, ...] = ("horizontal", "vertical", "sky")
#: NYUDv2's 40 classes of Gupta et al., label order 1..40 (0 = void, ignored).
NYUD40_CLASSES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)
#: The reference data layers' input means: SIFT Flow and NYUDv2 images (BGR), NYUDv2 HHA images
#: (in the PNG's own channel order) and log depth (depth in the PNG's units, millimetres).
SIFTFLOW_MEAN_BGR: tuple[float, float, float] = (114.578, 115.294, 108.353)
NYUD_MEAN_BGR: tuple[float, float, float] = (116.190, 97.203, 92.318)
NYUD_HHA_MEAN: tuple[float, float, float] = (118.477, 94.076, 132.431)
NYUD_LOG_DEPTH_MEAN: float = 7.844


def voc_palette(num_colors: int = 256) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map (RGB), as written into VOC's palette PNGs.

    Colour of label i: the bits of i are spread over the high bits of R, G and B in turn.
    """
    palette = []
    for i in range(num_colors):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.append((r, g, b))
    return palette
