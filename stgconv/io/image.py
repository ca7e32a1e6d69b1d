"""Read and write images. Pixel values live in ``[-1, 1]`` inside stgconv."""

from __future__ import annotations

import io
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError
from skimage import data as skimage_data
from torch import Tensor

from stgconv.checks import as_int, check_tensor, is_int
from stgconv.io.atomic import atomic_write

# Every suffix Pillow reads that people's files carry: Windows saves browsers' JPEGs as .jfif,
# browsers download .avif, and classic face sets (AT&T/ORL, Yale) are .pgm; a folder's other
# files are skipped, those of UNREAD_IMAGE_SUFFIXES with a warning.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".gif", ".tif", ".tiff",
                  ".webp", ".avif", ".pbm", ".pgm", ".ppm", ".pnm")

# Photographs' formats not read (a phone's HEIC, cameras' raw files, layered or vector drawings,
# HDR; Pillow reads none of them but PSD, whose flattened copy a file may lack): a folder read
# for its images names them rather than drop them unsaid.
UNREAD_IMAGE_SUFFIXES = (".heic", ".heif", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf",
                         ".rw2", ".raw", ".psd", ".xcf", ".svg", ".exr", ".hdr", ".jxl")

# scikit-image ships these real photographs; they are the embedded default data.
BUILTIN_IMAGES = ("brick", "grass", "gravel", "camera", "coffee", "astronaut", "rocket")


def to_levels(pixels: Tensor) -> Tensor:
    """Pixels as the models see them, in ``[-1, 1]``, -> grey levels 0-255 as image and video
    files hold them (float, unrounded): ``(pixels + 1) * 127.5``; any shape."""
    return (pixels + 1) * 127.5


def from_levels(levels: Tensor) -> Tensor:
    """Grey levels 0-255 -> pixels in ``[-1, 1]``: ``levels / 127.5 - 1``, the inverse of
    :func:`to_levels`; any shape."""
    return levels / 127.5 - 1.0


def check_pixels(pixels: Tensor, name: str) -> None:
    """``ValueError`` naming ``name`` unless ``pixels`` are floating point (as pixels in
    ``[-1, 1]`` are): grey levels 0-255 (uint8) or a bool mask would be clamped to white and
    black without a word."""
    if not pixels.is_floating_point():
        raise ValueError(f"{name} must be floating point pixels in [-1, 1], got {pixels.dtype}"
                         " (grey levels 0-255 convert with stgconv.io.image.from_levels)")


def to_bytes(pixels: Tensor) -> Tensor:
    """Pixels in ``[-1, 1]`` -> uint8 grey levels 0-255 as the image and video files hold them
    (clamped, rounded); any shape. TensorBoard takes these as they are: given ``[0, 1]`` floats
    it truncates, a level darker than the files in about half the pixels."""
    return to_levels(pixels.clamp(-1.0, 1.0)).round().to(torch.uint8)


def to_unit(pixels: Tensor) -> Tensor:
    """Pixels in ``[-1, 1]`` -> ``[0, 1]`` (clamped), as image viewers such as TensorBoard
    take them; any shape."""
    return ((pixels + 1) / 2).clamp(0.0, 1.0)


def to_tensor(array: np.ndarray) -> Tensor:
    """uint8 ``(H, W)`` or ``(H, W, C)`` -> float ``(C, H, W)`` in ``[-1, 1]``."""
    # Else a float array was read as grey levels (0.5 nearly black) and another rank failed in
    # torch's permute.
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"expected uint8 pixels (H, W) or (H, W, C), got {array.dtype} "
                         f"{array.shape}")
    if array.ndim == 2:
        array = array[:, :, None]
    return from_levels(torch.from_numpy(np.array(array)).permute(2, 0, 1).float())


def read_image(path: Path, *, what: str = "image", background: int = 255) -> Image.Image:
    """The decoded image file ``path`` upright, with 8-bit samples (:func:`_eight_bit`), or
    ``ValueError`` ("cannot read <what> <path>: ...") when it cannot be read so.

    Upright: a photo whose EXIF orientation says it was taken turned is turned as every viewer
    shows it (a phone's portrait JPEG is stored sideways). Opaque: transparency (an alpha
    channel, a palette's or a colour key's) is composited over white, or the grey level
    ``background`` (:func:`opaque`). In sRGB:
    colours stored under an embedded ICC profile are converted from it (:func:`_in_srgb`)."""
    try:
        # Opened from a file object, not the path, so that Pillow never memory-maps the pixels:
        # it maps an uncompressed one-strip "L", "P", "I;16" or "RGBA" TIFF whose Orientation
        # is 5-8 with the turned size, not the stored one, and the pixels come out scrambled.
        with open(path, "rb") as handle, Image.open(handle) as opened:
            frames = _frames(opened)
            if frames > 1:  # Pillow would give the first, and the rest be lost without a word
                raise ValueError(f"it holds {frames} frames (an animation or a multi-page "
                                 "file), not one image; save the one wanted as an image")
            opened.load()
            image = _white_is_black(opened, ImageOps.exif_transpose(opened))
            # A copy, usable once closed.
            image = opaque(_eight_bit(image), opened.format, background=background)
            return _in_srgb(image, opened.info.get("icc_profile"), path)
    except UnidentifiedImageError as err:  # Pillow's message names the file object
        raise ValueError(f"cannot read {what} {path}: {_unidentified(Path(path))}") from err
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {what} {path}: {err}") from err
    except Image.DecompressionBombError as err:  # not an OSError: Pillow's guard on pixel count
        raise ValueError(f"cannot read {what} {path}: it is too large to decode ({err}); "
                         "resize it first") from err


def _unidentified(path: Path) -> str:
    """Why Pillow identified no image in ``path``: a format it does not read (a phone's HEIC
    photo) or a numpy array, each with what to do, which "not an image file" alone made a
    damaged file of; no bytes at all (a copy or download cut short); else that."""
    if path.stat().st_size == 0:
        return "the file is empty (0 bytes)"
    suffix = path.suffix.lower()
    if suffix in UNREAD_IMAGE_SUFFIXES:
        return f"its format ({suffix}) is not read: convert it to PNG or JPEG"
    if suffix in (".npy", ".npz"):
        return ("numpy arrays, not an image file: save the image (uint8 (H, W) or (H, W, 3)) "
                f"as a PNG, PIL.Image.fromarray(image).save({path.with_suffix('.png').name!r})")
    return "not an image file Pillow can identify"


# TIFF pages that are no image of their own (NewSubfileType, TIFF 6.0): bit 0, a reduced-
# resolution copy of another page; bit 2, a transparency mask of another page.
_NOT_AN_IMAGE = 0b101


def _frames(image: Image.Image) -> int:
    """How many images the opened file holds: its frames, less a TIFF's pages that are
    reduced-resolution copies (NewSubfileType bit 0, as GeoTIFF overviews are) or transparency
    masks (bit 2, as scanners and Photoshop may write); one for a JPEG
    that carries other images after its own (an MPO: an Ultra HDR photo's gain map, a 3D
    camera's second view, a camera's large preview), which are no frames of an animation:
    every viewer shows the first, the primary image."""
    if image.format == "MPO":
        return 1
    if image.format != "TIFF":
        return getattr(image, "n_frames", 1)
    # Page by page: Pillow's n_frames sets every page up, and one in a layout it does not
    # decode (a transparency mask's, PhotometricInterpretation 4) raised a bare SyntaxError.
    full, page = 0, 0
    while True:
        try:
            image.seek(page)
        except EOFError:  # past the last page
            break
        except SyntaxError:  # a page Pillow cannot decode: its tags are read all the same
            pass
        full += not image.tag_v2.get(254, 0) & _NOT_AN_IMAGE
        page += 1
    image.seek(0)
    return full


def _white_is_black(opened: Image.Image, image: Image.Image) -> Image.Image:
    """``image`` (``opened``, turned upright) with black at 0 where ``opened`` is a TIFF whose
    PhotometricInterpretation is 0, WhiteIsZero (TIFF 6.0: "2**BitsPerSample-1 is imaged as
    black"). Pillow inverts such 1- to 8-bit grey itself, but hands 16-bit ("I;16") and float
    ("F") samples over as stored, so they read as a negative."""
    if (opened.format != "TIFF" or opened.mode in ("1", "L")
            or getattr(opened, "tag_v2", {}).get(262) != 0):
        return image
    if image.mode.startswith("I;16"):
        return Image.fromarray(65535 - np.asarray(image, dtype=np.uint16))  # mode I;16
    raise ValueError(f"its {image.mode!r} samples are stored white-is-zero (TIFF "
                     "PhotometricInterpretation 0), which has no white level to invert from")


def _eight_bit(image: Image.Image) -> Image.Image:
    """``image`` with 8-bit samples. 16-bit grey (Pillow's "I;16" modes, and "I", in which older
    Pillow opens 16-bit PNGs) is scaled by 255 / 65535 and float grey ("F") in [0, 1] by 255:
    Pillow's own conversion clips them at 255, which turns nearly every pixel white (or, for
    floats, black). Other ranges, and NaN or infinite samples, are refused rather than guessed.
    A colour key (a 16-bit grey PNG's transparent level) becomes an alpha channel ("LA"), for
    :func:`opaque`."""
    if not (image.mode.startswith("I;16") or image.mode in ("I", "F")):
        return image
    levels = np.asarray(image, dtype=np.float64)
    top = 1.0 if image.mode == "F" else 65535.0
    bad = int(np.count_nonzero(~np.isfinite(levels)))
    if bad:  # else named by a range "from nan to nan", whatever the other samples' range
        raise ValueError(f"{bad} of its {levels.size} {image.mode!r} samples "
                         f"{'is' if bad == 1 else 'are'} NaN or infinite, which no grey level is")
    if levels.size and not (levels.min() >= 0 and levels.max() <= top):
        raise ValueError(f"its {image.mode!r} samples run from {levels.min()} to "
                         f"{levels.max()}, outside 0..{top:g}, the range read for that mode")
    grey = np.round(levels * (255.0 / top)).astype(np.uint8)
    key = image.info.get("transparency")
    if isinstance(key, int):
        # A 16-bit grey PNG's colour key (tRNS) is a level of the stored samples: the 8-bit
        # image dropped it, and its transparent pixels read dark where an 8-bit key reads white.
        alpha = np.where(levels == key, 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([grey, alpha], axis=-1), "LA")
    return Image.fromarray(grey)  # mode L


def opaque(image: Image.Image, file_format: str | None = None, *,
           background: int = 255) -> Image.Image:
    """``image`` composited over white (or the grey level ``background``) where it has
    transparency (modes with alpha, or a palette / grey / RGB image with a ``transparency``
    entry), grey staying grey; else itself.
    A transparent pixel's stored colour means nothing (encoders keep whatever was there, or
    zero it: the same picture as PNG or lossless WebP differs there), and Pillow's
    ``convert("RGB")`` / ``convert("L")`` just drop alpha, which shows it. White is
    scikit-image's ``rgba2rgb`` default background. A BMP whose alpha is 0 everywhere is
    opaque, as browsers show it: its writer filled a padding byte, not an alpha channel."""
    if image.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and "transparency" not in image.info:
        return image
    if (file_format in ("BMP", "DIB") and "A" in image.getbands()
            and image.getchannel("A").getextrema() == (0, 0)):
        return image.convert("RGB")
    grey = image.mode in ("LA", "La", "L", "1")
    under = Image.new("RGBA", image.size, (background,) * 3 + (255,))
    flat = Image.alpha_composite(under, image.convert("RGBA")).convert("RGB")
    return flat.convert("L") if grey else flat


def _in_srgb(image: Image.Image, profile: bytes | None, path: Path) -> Image.Image:
    """``image`` (opaque, 8-bit samples) converted to sRGB from the colour space its embedded
    ICC ``profile`` describes; as it is without one, or for grey images. sRGB is what every
    viewer assumes of an untagged file and what this library's images are; a wide-gamut photo
    (Display P3 from phones, Adobe RGB from cameras) stores other numbers for the same colour,
    which read as sRGB come out dull, and print CMYK has no meaning without its profile. A
    profile that cannot be read, or is for other channels than the pixels, is ignored with a
    warning, as browsers ignore it."""
    if not profile or image.mode not in ("RGB", "CMYK", "P"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        space = source.profile.xcolor_space.strip()
        if image.mode == "P" and space == "RGB":
            image = image.convert("RGB")
        if space != image.mode:
            raise ImageCms.PyCMSError(f"it is for {space} colours, the pixels are {image.mode}")
        return ImageCms.profileToProfile(image, source, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError) as err:
        warnings.warn(f"{path}: its embedded ICC colour profile is ignored ({err}); its colours "
                      "are read as sRGB", RuntimeWarning, stacklevel=4)
        return image


_SRGB = ImageCms.createProfile("sRGB")


def to_channels(image: Image.Image, channels: int) -> Image.Image:
    """``image`` (8-bit samples, as :func:`read_image` gives) as grey (``channels`` 1: ITU-R
    601 luma, Pillow's ``convert("L")``) or RGB (3)."""
    check_channels(channels)
    if image.mode == "LAB" and channels == 1:
        # Pillow converts CIELAB (a TIFF's PhotometricInterpretation 8) to RGB but not to grey:
        # its "conversion from LAB to RGB not supported" stopped a run without naming the file.
        image = image.convert("RGB")
    return image.convert("L" if channels == 1 else "RGB")


def check_channels(channels: object) -> None:
    """``ValueError`` unless ``channels`` is the integer 1 (grey) or 3 (RGB), the images'
    channel counts: ``True`` and ``1.0``, which equal 1, are refused as counts are."""
    if not is_int(channels) or channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")


def luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 ``(..., 3)`` RGB -> uint8 ``(...)`` grey, bit for bit as Pillow's ``convert("L")``
    computes it (ITU-R 601 weights in 16-bit fixed point, rounded), so arrays and image files
    are made grey alike.

    Raises:
        ValueError: ``rgb`` not uint8 with 3 channels last: channels first ``(3, H, W)`` failed
            inside numpy's matmul, and other dtypes came back as wrong greys without a word
            (floats in ``[0, 1]`` all black, values past 255 wrapped).
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
        got = (f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray)
               else type(rgb).__name__)
        raise ValueError(f"luma: rgb must be uint8 (..., 3), the channels last, got {got}")
    weights = np.array([19595, 38470, 7471], dtype=np.uint32)
    return ((rgb.astype(np.uint32) @ weights + 0x8000) >> 16).astype(np.uint8)


def _resize(image: Image.Image, size: int | None, crop_square: bool) -> Image.Image:
    if crop_square:
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if size is not None:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return image


def load_image(
    path: str | Path, *, channels: int = 3, size: int | None = None, crop_square: bool = True
) -> Tensor:
    """Load an image file or ``builtin:<name>`` as ``(C, H, W)`` in ``[-1, 1]``.

    Args:
        channels: 1 (grey) or 3 (RGB).
        size: if given, the image is resized to ``size x size`` (after the crop; without it
            the aspect ratio changes).
        crop_square: centre-crop to a square first, with or without ``size``; ``False`` keeps
            the whole image.

    Raises:
        FileNotFoundError: missing file.
        ValueError: not a readable image, an unknown builtin name, ``channels`` not 1 or 3, or
            a ``size`` that is not an int >= 1.
    """
    if size is not None:  # else Pillow's "height and width must be > 0", after the read
        as_int(size, "size", minimum=1)
    text = str(path)
    if text.startswith("builtin:"):
        image = builtin_image(text.removeprefix("builtin:"))
    else:
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"{path} is a folder, not an image file")
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        image = read_image(path)
    image = _resize(to_channels(image, channels), size, crop_square)
    return to_tensor(np.asarray(image))


def builtin_image(name: str) -> Image.Image:
    """One of the real photographs bundled with scikit-image (see :data:`BUILTIN_IMAGES`)."""
    if name not in BUILTIN_IMAGES:
        raise ValueError(f"unknown builtin image {name!r}; choose from {', '.join(BUILTIN_IMAGES)}")
    return Image.fromarray(getattr(skimage_data, name)())


def save_image_grid(images: Tensor, path: str | Path, *, nrow: int = 8) -> Path:
    """Write ``(B, C, H, W)`` float images in ``[-1, 1]`` as one PNG grid to ``path`` (ending in
    ``.png``), atomically.

    Raises:
        ValueError: a ``path`` not ending in ``.png``, another shape, no image or no pixels, a
            dtype that is not floating point
            (grey levels 0-255 would be clamped to white: convert them with
            :func:`from_levels`), NaN/inf values, or ``nrow`` not an int >= 1.
    """
    check_tensor(images, "images")  # an array failed on "has no attribute 'dim'"
    if images.dim() != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"expected images of shape (B, 1 or 3, H, W) with B >= 1, got "
                         f"{tuple(images.shape)}")
    if 0 in images.shape[2:]:  # else Pillow's "cannot write empty image"
        raise ValueError(f"images have no pixels: (B, C, H, W) = {tuple(images.shape)}")
    as_int(nrow, "nrow", minimum=1)  # 0 divided by zero inside torchvision
    check_pixels(images, "images")
    if not torch.isfinite(images).all():  # else written as grey levels nobody could tell apart
        raise ValueError("images contain NaN or infinite values; refusing to write them")
    # torchvision takes seconds to import (it loads torch._dynamo); only writing a grid pays.
    from torchvision.utils import make_grid

    grid = make_grid(images.detach().float().cpu(), nrow=nrow, padding=2, pad_value=1.0)
    array = to_bytes(grid).permute(1, 2, 0).numpy()
    # make_grid repeats one channel to three; a grey grid is written as a grey PNG.
    return save_picture(array[:, :, 0] if images.shape[1] == 1 else array, path)


def save_picture(array: np.ndarray, path: str | Path) -> Path:
    """Write uint8 pixels ``(H, W)`` or ``(H, W, 3)`` as the PNG ``path``, atomically.

    Raises:
        ValueError: naming ``path``, for anything else: Pillow's own errors ("cannot write
            mode F as PNG") named neither, and a row ``(W,)`` became a one-pixel-high image;
            or a ``path`` not ending in ``.png`` (a "grid.jpg" held a PNG, as render_voxels
            refuses it).
    """
    if Path(path).suffix.lower() != ".png":
        raise ValueError(f"cannot write {path}: a picture is written as PNG, so its path must "
                         "end in .png")
    if (not isinstance(array, np.ndarray) or array.dtype != np.uint8 or 0 in array.shape
            or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3))):
        got = (f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray)
               else type(array).__name__)
        raise ValueError(f"cannot write {path}: a picture is uint8 (H, W) or (H, W, 3) with H, "
                         f"W >= 1, got {got}")
    return atomic_write(path, partial(Image.fromarray(array).save, format="PNG"))
