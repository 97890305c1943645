"""Image files as a run's data: read with Pillow, in the run's channels and size.

``cnnlab predict`` reads each file into uint8 pixels of the run's sample shape (C, H, W), as the
data sets store theirs (MNIST's grey digits, CIFAR's RGB images), and then normalises them
exactly as :func:`cnnlab.data.load` normalised the run's splits
(:func:`cnnlab.data.normalised`). So a PNG written from a data set's own uint8 pixels becomes
the very array the loader gives for that image.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.errors import RunError, UsageError

# What a folder's images are found by (Pillow reads these; files named otherwise are given
# one by one).
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# The Pillow mode of a sample with C channels.
MODES = {1: "L", 3: "RGB"}


@dataclass(frozen=True)
class Image:
    """One file read for a run: ``pixels`` (C, H, W) uint8 in the run's shape; ``mode`` and
    ``size`` (W, H) as the file stores it."""

    path: Path
    pixels: np.ndarray
    mode: str
    size: tuple[int, int]

    @property
    def resized(self) -> bool:
        return self.size != (self.pixels.shape[2], self.pixels.shape[1])


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files ``paths`` name: each file as given, each folder's images (by suffix, sorted;
    not its subfolders). A path that does not exist, or a folder without images, is a one-line
    UsageError."""
    files: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES)
            if not found:
                raise UsageError(f"{given}: no image files in this folder ({', '.join(SUFFIXES)})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"{given}: no such file or folder")
    return files


def read_image(path: Path, shape: tuple[int, int, int]) -> Image:
    """The image in ``path`` as uint8 pixels of ``shape`` (C, H, W): converted to grey (C = 1,
    ITU-R 601 luma, alpha dropped) or RGB (C = 3), then resized to H x W (bilinear, with
    Pillow's antialiasing when shrinking) if its size differs. A file Pillow cannot read is a
    one-line RunError."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    C, H, W = shape
    if C not in MODES:
        raise UsageError(f"{path}: the run's images have {C} channels; image files give 1 or 3")
    try:
        with PILImage.open(path) as img:
            img.load()
            mode, size = img.mode, img.size
            converted = img.convert(MODES[C])
    except UnidentifiedImageError:
        raise RunError(f"{path}: not an image file Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or damaged files
        raise RunError(f"{path}: unreadable image ({_first_line(exc)})") from None
    if converted.size != (W, H):
        converted = converted.resize((W, H), PILImage.Resampling.BILINEAR)
    pixels = np.asarray(converted, dtype=np.uint8).reshape(H, W, C).transpose(2, 0, 1)
    return Image(path, np.ascontiguousarray(pixels), mode, size)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
