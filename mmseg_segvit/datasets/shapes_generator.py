"""Procedural scenes of textured shapes: the embedded demo dataset.

Each image has a sky above a horizon and one or two kinds of ground below
it, with a few textured objects on top. Every class has its own colour,
texture and (for objects) outline, jittered per instance, so the task is
learnable in minutes yet not solvable by colour thresholds alone. The output
is deterministic for a given seed and uses MMSegmentation's folder layout::

    root/img_dir/{train,val}/00000.png   (RGB images)
    root/ann_dir/{train,val}/00000.png   (uint8 labels, 0..11)
"""
import os
import os.path as osp
import shutil
import tempfile
from typing import Callable, Dict, Tuple

import cv2
import numpy as np

__all__ = [
    'CLASSES', 'PALETTE', 'generate_shapes_dataset', 'render_scene',
    'dataset_is_complete'
]

CLASSES = ('sky', 'grass', 'water', 'sand', 'disc', 'box', 'triangle',
           'ellipse', 'diamond', 'cross', 'star', 'bar')
PALETTE = [[120, 170, 235], [60, 160, 60], [30, 90, 200], [220, 200, 130],
           [220, 40, 40], [240, 140, 20], [140, 60, 180], [200, 200, 200],
           [110, 70, 30], [230, 60, 170], [40, 210, 210], [30, 30, 30]]
# Base RGB colour of each class's texture.
_BASE_RGB = np.array(
    [[135, 190, 240], [70, 150, 60], [40, 90, 190], [215, 195, 140],
     [210, 50, 45], [235, 145, 40], [130, 70, 175], [225, 225, 225],
     [105, 70, 40], [220, 70, 160], [60, 200, 200], [40, 40, 40]],
    dtype=np.float32)
GROUND = (1, 2, 3)
OBJECTS = tuple(range(4, 12))
SPLITS: Dict[str, int] = {'train': 400, 'val': 100}


def _texture(cls: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size, 3) float image of class ``cls``'s texture."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    period = rng.uniform(5, 9)
    patterns: Dict[int, Callable[[], np.ndarray]] = {
        0: lambda: -0.25 * yy / size,  # sky: vertical gradient
        1: lambda: 0.0 * yy,  # grass: noise only
        2: lambda: 0.25 * np.sin(yy / 2.5 + 0.8 * np.sin(xx / 9) + phase),
        3: lambda: 0.2 * ((xx.astype(int) * 7 + yy.astype(int) * 13) % 5 == 0),
        4: lambda: 0.15 * np.sin(np.hypot(xx - size / 2, yy - size / 2) / 2),
        5: lambda: 0.25 * (((xx // period) + (yy // period)) % 2) - 0.12,
        6: lambda: 0.2 * np.sin((xx + yy) / period * 2 + phase),
        7: lambda: 0.25 * np.sin(xx / period * 3 + phase),
        8: lambda: 0.2 * np.sin(xx / 3 + phase) * np.sin(yy / 3),
        9: lambda: 0.25 * (yy % period < period / 2) - 0.12,
        10: lambda: 0.2 * np.cos(np.hypot(xx, yy) / 3 + phase),
        11: lambda: 0.3 * ((xx + yy) % (2 * period) < period) - 0.15,
    }
    noise_level = 0.25 if cls == 1 else 0.08
    pattern = patterns[cls]() + rng.normal(0, noise_level, (size, size))
    colour = _BASE_RGB[cls] * rng.uniform(0.85, 1.15, 3)
    img = colour[None, None] * (1 + pattern[..., None])
    return np.clip(img, 0, 255)


def _object_mask(cls: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size) bool mask of one object of class ``cls``."""
    mask = np.zeros((size, size), np.uint8)
    r = rng.uniform(0.1, 0.24) * size
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r * 0.6)
    angle = rng.uniform(0, 2 * np.pi)

    def polygon(radii, count):
        t = angle + np.arange(count) * 2 * np.pi / count
        pts = np.stack([cx + radii * np.cos(t), cy + radii * np.sin(t)], 1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)

    center = (int(cx), int(cy))
    if cls == 4:  # disc
        cv2.circle(mask, center, int(r), 1, -1)
    elif cls == 5:  # box
        polygon(np.full(4, r * 1.2), 4)
    elif cls == 6:  # triangle
        polygon(np.full(3, r * 1.3), 3)
    elif cls == 7:  # ellipse
        cv2.ellipse(mask, center, (int(r * 1.3), int(r * 0.6)),
                    float(np.degrees(angle)), 0, 360, 1, -1)
    elif cls == 8:  # diamond
        polygon(np.array([r * 1.4, r * 0.8] * 2), 4)
    elif cls == 9:  # cross
        w = max(int(r * 0.35), 2)
        cv2.rectangle(mask, (int(cx - r), int(cy - w)),
                      (int(cx + r), int(cy + w)), 1, -1)
        cv2.rectangle(mask, (int(cx - w), int(cy - r)),
                      (int(cx + w), int(cy + r)), 1, -1)
    elif cls == 10:  # star
        polygon(np.array([r * 1.3, r * 0.55] * 5), 10)
    else:  # bar
        polygon(np.array([1.6, 0.4, 1.6, 0.4]) * r, 4)
    return mask.astype(bool)


def render_scene(seed: int, size: int = 128) -> Tuple[np.ndarray, np.ndarray]:
    """Render one scene.

    Args:
        seed (int): Seed of this scene.
        size (int): Side of the square image. Default: 128.

    Returns:
        tuple: RGB image (size, size, 3) uint8 and labels (size, size) uint8.
    """
    rng = np.random.default_rng(seed)
    label = np.zeros((size, size), np.uint8)
    horizon = int(rng.uniform(0.2, 0.5) * size)
    grounds = rng.choice(GROUND, size=2, replace=False)
    yy, xx = np.mgrid[0:size, 0:size]
    label[yy >= horizon] = grounds[0]
    if rng.random() < 0.5:  # a second kind of ground beyond a slanted line
        slope = rng.uniform(-1.5, 1.5)
        split = xx - rng.uniform(0.3, 0.7) * size - slope * (yy - horizon)
        label[(yy >= horizon) & (split > 0)] = grounds[1]
    for cls in rng.choice(OBJECTS, size=rng.integers(2, 5), replace=False):
        label[_object_mask(int(cls), size, rng)] = cls
    img = np.zeros((size, size, 3), np.float32)
    for cls in np.unique(label):
        region = label == cls
        img[region] = _texture(int(cls), size, rng)[region]
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    return np.clip(img, 0, 255).astype(np.uint8), label


def dataset_is_complete(root: str) -> bool:
    """Whether ``root`` holds every split with matching images and labels."""
    for split, count in SPLITS.items():
        for sub in ('img_dir', 'ann_dir'):
            folder = osp.join(root, sub, split)
            if not osp.isdir(folder) or len(os.listdir(folder)) != count:
                return False
    return True


def generate_shapes_dataset(root: str, size: int = 128, seed: int = 0) -> str:
    """Write the dataset to ``root`` unless it is already there.

    Files are written to a temporary folder beside ``root`` and moved in
    place at the end, so an interrupted run never leaves a partial dataset
    and concurrent processes do not clash.

    Args:
        root (str): Destination folder.
        size (int): Image side. Default: 128.
        seed (int): Base seed. Default: 0.

    Returns:
        str: ``root``.
    """
    if dataset_is_complete(root):
        return root
    if osp.exists(root) and os.listdir(root):
        raise FileExistsError(
            f'{root} exists but is not a complete demo dataset; remove it '
            'to regenerate it')
    parent = osp.dirname(osp.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.shapes-', dir=parent)
    try:
        offset = 0
        for split, count in SPLITS.items():
            img_dir = osp.join(tmp, 'img_dir', split)
            ann_dir = osp.join(tmp, 'ann_dir', split)
            os.makedirs(img_dir)
            os.makedirs(ann_dir)
            for i in range(count):
                img, label = render_scene(seed * 100003 + offset + i, size)
                name = f'{i:05d}.png'
                cv2.imwrite(osp.join(img_dir, name), img[..., ::-1])
                cv2.imwrite(osp.join(ann_dir, name), label)
            offset += count
        if osp.isdir(root):
            os.rmdir(root)  # empty (checked above)
        try:
            os.rename(tmp, root)
        except OSError:
            if not dataset_is_complete(root):  # not another process's work
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
