"""Photo bytes to model input, without torch: the functions decode processes run
(``processes.DecodeProcesses`` runs them).

``prepare`` reproduces open_clip's default image transform (resize the shorter side with
bicubic filtering, centre crop, scale to 0..1, normalise) the way torchvision applies it to a
PIL image, so a photo decoded here gives the vector the API's own preprocessing gives. The
module imports only PIL and numpy, so each decode process starts in a fraction of a second.

``DecodeProcesses`` runs one photo at a time in each of a few separate processes, so that a
decode can be stopped: one that overruns its time, or whose caller has gone, is killed and
replaced (a thread cannot be stopped, and a decoder holding the interpreter stalls every request).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

JPEG_MAGIC = b"\xff\xd8\xff"
# CLIP's transform resizes the short side to the model's size and keeps the centre square, so
# the long side of a 1 x 20000 strip would become 4.5 million pixels that are then cropped
# away. Beyond this ratio the long side is centre-cropped before resizing: the square the model
# sees is unchanged and what resizing costs is at most size x (size * MAX_MODEL_ASPECT).
MAX_MODEL_ASPECT = 4


@dataclass(frozen=True)
class PixelSpec:
    """What the model's transform does: output size and the normalisation constants."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_config(cls, config: dict[str, object] | None) -> PixelSpec | None:
        """From open_clip's ``visual.preprocess_cfg``; None when the transform is not the default
        (another resize mode or filter), so the caller uses the model's own transform."""
        if not config:
            return None
        size = config.get("size")
        if isinstance(size, (tuple, list)):
            if len(size) != 2 or size[0] != size[1]:
                return None
            size = size[0]
        if (
            not isinstance(size, int)
            or config.get("resize_mode", "shortest") != "shortest"
            or config.get("interpolation", "bicubic") != "bicubic"
            or config.get("mode", "RGB") != "RGB"
        ):
            return None
        mean, std = config.get("mean"), config.get("std")
        if not isinstance(mean, (tuple, list)) or not isinstance(std, (tuple, list)):
            return None
        return cls(size, tuple(float(m) for m in mean), tuple(float(s) for s in std))  # type: ignore[arg-type]


def open_stored_rgb(data: bytes) -> Image.Image:
    """A stored photo as RGB: stored photos were checked, made upright and stripped on upload, so
    the worker decodes them plainly (``images.decode_rgb`` is the careful decode of what a request sent)."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def resized_size(width: int, height: int, target: int) -> tuple[int, int]:
    """torchvision's Resize(int): the shorter side becomes ``target``, the longer keeps the ratio."""
    if width <= height:
        return target, int(target * height / width)
    return int(target * width / height), target


def model_view(image: Image.Image) -> Image.Image:
    """The image with its long side centre-cropped to ``MAX_MODEL_ASPECT`` times the short one
    (unchanged when within that): all of it that the model's centre crop can see."""
    width, height = image.size
    short = max(1, min(width, height))
    longest = short * MAX_MODEL_ASPECT
    if width > longest:
        left = (width - longest) // 2
        return image.crop((left, 0, left + longest, height))
    if height > longest:
        top = (height - longest) // 2
        return image.crop((0, top, width, top + longest))
    return image


def prepare(image: Image.Image, spec: PixelSpec) -> np.ndarray:
    """An RGB image as the model's normalised CHW float32 input."""
    image = model_view(image)
    width, height = image.size
    new_size = resized_size(width, height, spec.size)
    if new_size != (width, height):
        image = image.resize(new_size, Image.Resampling.BICUBIC)
        width, height = new_size
    if width < spec.size or height < spec.size:  # only for degenerate one-pixel-wide photos
        canvas = Image.new("RGB", (max(width, spec.size), max(height, spec.size)))
        canvas.paste(image, ((canvas.width - width) // 2, (canvas.height - height) // 2))
        image, (width, height) = canvas, canvas.size
    top = int(round((height - spec.size) / 2.0))
    left = int(round((width - spec.size) / 2.0))
    image = image.crop((left, top, left + spec.size, top + spec.size))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))


def decode_and_prepare(data: bytes, spec: PixelSpec) -> np.ndarray:
    """Run in a decode process: photo bytes to model input."""
    return prepare(open_stored_rgb(data), spec)


def decode_to_array(data: bytes) -> np.ndarray:
    """Run in a decode process: photo bytes to an RGB HWC uint8 array (the GPU resizes it)."""
    return np.asarray(open_stored_rgb(data), dtype=np.uint8)
