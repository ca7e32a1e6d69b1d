"""Argument checks shared by the readers, datasets, baselines, scores and tasks: the error names the
argument and repeats its bad value."""

from __future__ import annotations

import errno
import math
import numbers
import operator
import os
import tempfile
import tokenize
import zipfile
import zlib
from contextlib import ExitStack, contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

# The most entries one example or one batch of samples may hold: 2^28, 1 GiB as float32. Past
# it the allocation fails deep inside torch, or the system kills the process, often after
# minutes of work; a size typed one digit too long is refused up front instead.
MAX_ENTRIES = 2**28

# Seeds are below it: torch's generators take 64-bit seeds, and each process of a run adds its
# rank to the run's.
SEED_LIMIT = 2**63 - 2**16

# Float32's largest number: settings and options past it turn infinite in the float32 tensors
# they scale (a learning rate, a penalty), failing deep inside torch.
FLOAT32_MAX = float(torch.finfo(torch.float32).max)
# Float32's smallest normal number: a setting nearer 0 is 0 in the float32 tensors it scales,
# or keeps a few bits there (a subnormal, which GPUs flush to 0): train.lr 1e-50 trained
# nothing, without a word.
FLOAT32_TINY = float(torch.finfo(torch.float32).tiny)

# A chain moves by step_size^2 / 2 times the gradient, on data of order 1: a step past this
# bound throws every chain off the data at once, and past about 10^19 the factor overflows
# float32 (a traceback deep in the sampler instead of a message).
MAX_STEP_SIZE = 1e3


def _index(value: object) -> int | None:
    """``value`` as a Python int where it is an integer (anything with ``__index__``: ints,
    numpy integers), else ``None``: floats and bools too, so a ``True`` or a ``2.0`` never
    stands in for a count or a seed."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer (anything with ``__index__``), not a float or a bool."""
    return _index(value) is not None


def as_int(value: object, name: str, *, minimum: int) -> int:
    """``value`` as a Python int, or ``ValueError`` unless it is an int ``>= minimum``
    (floats and bools are refused, :func:`_index`)."""
    number = _index(value)
    if number is None or number < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return number


def check_up_axis(value: object, name: str = "up_axis") -> int:
    """``value`` as a Python int 0, 1 or 2 (a mesh's up axis: x, y or z), or ``ValueError``
    naming ``name``; a ``True`` or a ``1.0`` is refused, as by :func:`as_int`."""
    number = _index(value)
    if number not in (0, 1, 2):
        raise ValueError(f"{name} must be 0, 1 or 2, got {value!r} (the meshes' up axis: 0 = x, "
                         "1 = y, 2 = z; ModelNet: 2, ShapeNet and most .obj files: 1)")
    return number


def check_seed(value: object, name: str = "seed") -> int:
    """``value`` as a Python int in ``[0, SEED_LIMIT)``, or ``ValueError`` naming ``name``.

    torch's generators fail on a float or a bool ("manual_seed expected a long") and past 64
    bits ("Overflow when unpacking long long"), neither naming the seed, and take a negative
    seed wrapped round, where the CLI and the configs refuse it.
    """
    number = _index(value)
    if number is None or not 0 <= number < SEED_LIMIT:
        raise ValueError(f"{name} must be an int in [0, 2^63 - 2^16), got {value!r}")
    return number


def check_finite_number(value: float, name: str, *, positive: bool = False) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is finite and ``>= 0`` (``> 0`` with
    ``positive``). NaN fails too: it compares false with every bound, so a plain ``value < 0``
    test lets it through. A value that is no number (a string, ``None``, ``True``) is named
    too, where the comparison failed in Python's words."""
    try:
        finite = math.isfinite(value)
    except (TypeError, ValueError):  # ValueError: a tensor of several values
        finite = None
    if finite is None or isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not (finite and (value > 0 if positive else value >= 0)):
        raise ValueError(f"{name} must be finite and {'> 0' if positive else '>= 0'}, got {value}")


def check_fps(fps: object, name: str = "fps") -> Fraction:
    """``fps`` as the exact fraction files store (denominator at most 10^6), or ``ValueError``
    naming ``name`` unless it is a finite number that fraction keeps above 0."""
    # float(): Fraction takes no numpy float32 (a TypeError, "argument should be a string or a
    # Rational instance"), which is a numbers.Real all the same.
    rate = (Fraction(fps if isinstance(fps, numbers.Rational) else float(fps))
            .limit_denominator(1_000_000)
            if isinstance(fps, numbers.Real) and not isinstance(fps, bool)
            and 0 < fps < float("inf") else Fraction(0))
    if rate <= 0:
        raise ValueError(f"{name} must be a finite number of at least 1e-6 frames per second, "
                         f"got {fps!r}")
    return rate


def check_clamp(clamp: object) -> None:
    """``ValueError`` unless ``clamp`` is ``None`` or ``(low, high)``, two real numbers with
    ``low < high``: torch's clamp set every entry to ``high`` without a word where ``low >=
    high``, and a third bound or bounds that are no numbers were taken until the first step
    failed inside torch ("clamp_() received an invalid combination of arguments")."""
    if clamp is None:
        return
    # 0-d real tensors too (clamp=(x.min(), x.max())): torch's clamp takes them as bounds.
    pair = (isinstance(clamp, (tuple, list)) and len(clamp) == 2
            and all(is_real_scalar(v) for v in clamp))
    if not (pair and clamp[0] < clamp[1]):
        raise ValueError(f"clamp must be (low, high), two real numbers with low < high, got "
                         f"{clamp!r}")


def is_real_scalar(value: object) -> bool:
    """A real number or 0-d real tensor: not a bool, a string or a complex value, which a
    plain comparison either failed on (``TypeError``) or took as a number."""
    if isinstance(value, Tensor):
        return value.dim() == 0 and not (value.is_complex() or value.dtype == torch.bool)
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_step_size(step_size: float, *, noise_scale: float | None = None, prefix: str = ""
                    ) -> None:
    """``ValueError`` naming the setting unless a sampler's ``step_size`` is finite, ``> 0`` and
    at most :data:`MAX_STEP_SIZE`, and, given ``noise_scale``, each step's noise std
    ``noise_scale * step_size`` is at most that too (at 1e300 it overflowed float32: a
    traceback in the sampler). ``prefix`` (``"sampler."``) goes before each setting's name."""
    check_finite_number(step_size, f"{prefix}step_size", positive=True)
    if step_size > MAX_STEP_SIZE:
        raise ValueError(f"{prefix}step_size must be at most {MAX_STEP_SIZE:g}, got {step_size!r}")
    if noise_scale is not None and noise_scale * step_size > MAX_STEP_SIZE:
        raise ValueError(f"{prefix}noise_scale times {prefix}step_size (each step's noise) must "
                         f"be at most {MAX_STEP_SIZE:g}, got {noise_scale!r} x {step_size!r}")


def refuse_inference_mode(needs: str, instead: str) -> None:
    """``RuntimeError`` inside ``torch.inference_mode()``, in which no block can turn autograd
    back on, saying what ``needs`` gradients and to do it (``instead``) outside: torch's own
    message, from the backward pass, names neither."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError(f"{needs}, which torch.inference_mode() turns off: {instead} outside "
                           "it (torch.no_grad() is fine)")


def expand_mask(mask: Tensor, like: Tensor, name: str, like_name: str) -> Tensor:
    """``mask`` expanded (a view) to ``like``'s shape, or ``ValueError`` naming both tensors and
    their shapes when it does not broadcast: torch's own message names neither."""
    try:
        return mask.expand_as(like)
    except RuntimeError as err:
        raise ValueError(f"{name} {tuple(mask.shape)} does not broadcast to {like_name} "
                         f"{tuple(like.shape)}") from err


def as_array(x: np.ndarray | Tensor) -> np.ndarray:
    """``x`` as a numpy array (a tensor detached, on the CPU); bfloat16, which numpy has no type
    for ("Got unsupported ScalarType BFloat16"), as float32, which holds its every value."""
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    return np.asarray(x)


def check_flag(value: object, name: str) -> bool:
    """``value`` as a Python bool, or ``ValueError`` naming ``name`` unless it is ``True`` or
    ``False`` (a numpy bool too): binary="no" was taken as true, and written so into a table."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_bool_mask(mask: object, name: str, *, meaning: str = "True = observed") -> None:
    """``ValueError`` naming ``name`` and what its True entries mean unless ``mask`` is a bool
    tensor (any shape: the callers check how it meets their data)."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"{name} must be a bool tensor ({meaning}), got {got}")


def check_classes(y: Tensor, name: str, *, n_classes: int | None = None) -> None:
    """``ValueError`` naming ``name`` unless the classes ``y`` (any shape) are integers (a
    float or bool class would be truncated to another class without a word) and, given
    ``n_classes``, in ``0 .. n_classes - 1``: that check reads the values, a synchronisation on
    a GPU."""
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} must be integers, got {y.dtype}")
    if n_classes is not None and y.numel() and bool(((y < 0) | (y >= n_classes)).any()):
        raise ValueError(f"{name} must be in 0 .. {n_classes - 1}, got {int(y.min())} .. "
                         f"{int(y.max())}")


def check_whole_labels(labels: Tensor, name: str) -> None:
    """``ValueError`` naming ``name`` unless float ``labels`` are whole numbers: scores that
    only count or compare classes take ``tensor([0., 1., 2.])`` as classes 0, 1, 2 (nothing is
    cut to another class), but a fraction is no class, and NaN or an infinity is none either
    (an infinity failed in ``int()`` with an ``OverflowError``)."""
    if not labels.is_floating_point():
        return
    if not bool(torch.isfinite(labels).all()):
        raise ValueError(f"{name} must be whole class numbers, got NaN or infinite values")
    if not bool((labels == labels.round()).all()):
        raise ValueError(f"{name} must be whole class numbers, got fractions")


def differing_keys(held: object, own: dict[str, Any], prefix: str = "") -> list[str]:
    """The keys, dotted through nested dicts (``product_of_experts.weights``), at which the
    plain-data settings ``held`` (a checkpoint's) and ``own`` differ, for a refusal to name;
    ``[]`` where ``held`` is not a dict."""
    if not isinstance(held, dict):
        return []
    keys = []
    for key in sorted({*held, *own}):
        if held.get(key) != own.get(key):
            inner = (differing_keys(held.get(key), own[key], f"{prefix}{key}.")
                     if isinstance(own.get(key), dict) else [])
            keys += inner or [prefix + key]
    return keys


def check_tensor(x: object, name: str) -> None:
    """``ValueError`` naming ``name`` unless ``x`` is a tensor: a numpy array or a list failed
    at its first use as one ("'numpy.ndarray' object has no attribute 'dim'"), naming
    neither the argument nor what to do."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__} (convert it "
                         f"first: torch.as_tensor({name}))")


def check_batch(x: object, name: str) -> None:
    """:func:`check_tensor`, and ``ValueError`` naming ``name`` for a 0-d tensor where a batch
    ``(B, *S)`` goes: one number failed on "len() of a 0-d tensor" or "Dimension out of
    range", and the energy families that refused it said so in three wordings."""
    check_tensor(x, name)
    if x.dim() == 0:
        raise ValueError(f"{name} must be a batch (B, *S), got a 0-d tensor ({name}[None]: one "
                         "example)")


def check_path(value: object, name: str) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is a path (a ``str`` or an
    ``os.PathLike``): an array or a tensor given where a file is read failed in pathlib
    ("expected str, bytes or os.PathLike object, not ndarray"), naming no argument."""
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"{name} must be a file's path (a str or a pathlib.Path), got "
                         f"{type(value).__name__}: save the data to a file and give its path")


def check_not_meta(x: object, name: str) -> None:
    """``ValueError`` naming ``name`` when ``x`` is a tensor on the meta device, which holds
    shapes but no values: torch failed on it deep inside ("Cannot copy out of meta tensor",
    "Tensor.item() cannot be called on meta tensors")."""
    if isinstance(x, Tensor) and x.is_meta:
        raise ValueError(f"{name} is on the meta device, which holds shapes but no values: "
                         "make it on the CPU or a GPU")


# What autocast casts for a layer. Float64, integer and bool inputs it passes on as they are,
# and the layer refused them ("Input type (double) and bias type (c10::BFloat16) should be the
# same"), under a sampler's precision="bf16" too.
AUTOCAST_CASTS = (torch.float32, torch.float16, torch.bfloat16)


def check_dtype_for(x: Tensor, energy: object, name: str) -> None:
    """:func:`check_dtype` of ``x`` against ``energy``'s parameters where it is a module that
    has some; an energy of one's own (a function, a module without parameters) states no
    dtype, and nothing is checked."""
    weight = next(energy.parameters(), None) if isinstance(energy, torch.nn.Module) else None
    if weight is not None:
        check_dtype(x, weight.dtype, name)


def check_dtype(x: Tensor, own: torch.dtype, name: str) -> None:
    """``ValueError`` naming ``name`` unless ``x`` has the dtype ``own`` of the network it
    enters: torch's own message ("Input type (double) and bias type (float) should be the
    same") comes from inside the network's first layer and names neither. Under autocast the
    layers cast the dtypes of :data:`AUTOCAST_CASTS` for themselves, so those pass."""
    if x.dtype == own or (x.dtype in AUTOCAST_CASTS
                          and torch.is_autocast_enabled(x.device.type)):
        return
    # No model takes integers: model.to(torch.uint8) is no advice to give.
    model = f" or the model (model.to({x.dtype}))" if x.is_floating_point() else ""
    raise ValueError(f"expected {name} of dtype {own} (the network's), got {x.dtype}: "
                     f"convert it ({name}.to({own})){model}")


def check_device(x: Tensor, own: torch.device, name: str) -> None:
    """``ValueError`` naming ``name`` unless ``x`` is on the device ``own`` of the network it
    enters: torch's own message ("Tensor on device cpu is not on the expected device meta!",
    "Input type (torch.FloatTensor) and weight type (torch.cuda.FloatTensor) should be the
    same") comes from inside the network's first layer and names neither, and a meta ``x``
    went through some layers without a word, its energy holding no values."""
    if x.device != own:
        raise ValueError(f"expected {name} on the network's device {own}, got {x.device}: "
                         f"move it ({name}.to('{own}')) or the model")


def check_finite_observed(values: Tensor | np.ndarray, known: Tensor | np.ndarray, name: str
                          ) -> None:
    """``ValueError`` naming ``name`` unless ``values`` is finite wherever ``known`` (bool, of
    ``values``' shape; both tensors or both arrays) is True: a fill keeps its observed entries
    and fills from them, so a NaN among them would come back as an observed value or spread
    into the filled ones. Arrays are checked by numpy: a fill that has copied a GPU's tensors to
    the host for scipy checks them there, without waiting for the GPU again."""
    finite = np.isfinite if isinstance(values, np.ndarray) else torch.isfinite
    if not bool(finite(values[known]).all()):
        raise ValueError(f"{name} has NaN or infinite values at observed entries (known=True)")


def check_generator(generator: object, owner: str) -> None:
    """``ValueError`` naming ``owner`` (the sampler, function or class that draws) unless
    ``generator`` is ``None`` or a ``torch.Generator``: a seed given in its place failed inside
    torch's first draw ("randn() received an invalid combination of arguments"), naming
    neither, or passed a call that drew nothing that time and failed in a later one."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"{owner}: generator must be a torch.Generator or None, got "
                         f"{type(generator).__name__} {generator!r} (for a seed: "
                         "generator=torch.Generator().manual_seed(seed))")


def check_voxels(x: object, name: str) -> None:
    """``ValueError`` naming ``name`` unless ``x`` is a voxel batch ``(B, 1, D, H, W)``."""
    if not isinstance(x, Tensor) or x.dim() != 5 or x.shape[1] != 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be voxels (B, 1, D, H, W), got {shape}")


def as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """A frame size ``(H, W)`` from one positive int (square) or a pair of them."""
    try:  # one int, as as_int takes it (numpy's, a 0-dim tensor's): a square
        pair = (as_int(size, "size", minimum=1),) * 2
    except ValueError:
        pair = size
    try:
        pair = tuple(as_int(s, "size", minimum=1) for s in pair)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2:
        raise ValueError(f"size must be a positive int or a pair (H, W) of them, got {size!r}")
    return pair


def check_entries(shape: Sequence[int], name: str) -> None:
    """``ValueError`` naming ``name`` when a tensor of ``shape`` would hold more than
    :data:`MAX_ENTRIES` entries."""
    entries = math.prod(shape)
    if entries > MAX_ENTRIES:
        raise ValueError(f"{name} makes a {tuple(shape)} tensor of {entries:.3g} entries, over the "
                         f"limit of 2^28 (1 GiB as float32)")


# What an existing path that is neither a file nor a folder is (/dev/null, a FIFO): a file
# written there is renamed over it, which replaced /dev/null itself for root.
SPECIAL_FILE = "not a regular file (a device, a named pipe or a socket)"

# Why a folder that exists refuses a new file, by the error creating one gave. ENOENT is what a
# virtual file system (/proc) answers: its own words, "No such file or directory", would send
# the user looking for a folder that is there.
_REFUSED_BECAUSE = {
    errno.ENOENT: "does not accept new files",
    errno.EACCES: "is not writable",
    errno.EPERM: "is not writable",
    errno.EROFS: "is on a read-only file system",
    errno.ENOSPC: "is on a full disk",
    errno.EDQUOT: "is on a disk over its quota",
}


def _what_is_there(path: Path) -> str:
    """What ``path``, which exists and is no folder, is: a named pipe was called a file."""
    return "a file" if path.is_file() else "a device, a named pipe or a socket"


def check_output(path: str | Path, name: str, *, folder: bool = True) -> Path:
    """``path`` as a ``Path``, or ``ValueError`` naming ``name`` unless it can be written as a
    folder (``folder``) or a file: it is not the other kind, nothing above it is a file, and
    the folder it would be made in (or written into) takes a new file.

    Checked before a command starts work, so a typo in an output path costs no computation.
    """
    if isinstance(path, str) and not path:
        # Path("") is ".": `out_dir: ""` in a config wrote a run among the files there.
        raise ValueError(f"{name} is empty (''), which would be the working folder: give a "
                         "path ('.' for that folder)")
    if str(path) == "-":  # many tools' standard output; here it made a file named "-"
        raise ValueError(f"{name} - would be a {'folder' if folder else 'file'} named '-' (it "
                         "does not mean the standard output here): give a path")
    if not folder and isinstance(path, str) and path.endswith(("/", os.sep)):
        # Path drops the slash that says a folder was meant: a file of the folder's name was
        # written ("--out priors/" made the file priors).
        raise ValueError(f"{name} {path} ends in '/', a folder: give the path of a file to "
                         "write (in it)")
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kind = f"{_what_is_there(path)}, not a folder" if folder else "a folder, not a file"
        raise ValueError(f"{name} {path} is {kind}")
    if not folder and path.exists() and not path.is_file():
        raise ValueError(f"{name} {path} is {SPECIAL_FILE}: give the path of a file to write")
    if folder and path.is_symlink() and not path.exists():  # mkdir would say "File exists"
        raise ValueError(f"{name} {path} is a symbolic link to nothing "
                         f"({os.readlink(path)}): make its target, or give another folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{name} {path} lies under {parent}, which is "
                                 f"{_what_is_there(parent)}")
            break
    place = path if folder and path.is_dir() else next(p for p in path.parents if p.exists())
    try:
        # A file made and removed: permissions alone do not tell (root may write anywhere by
        # them, yet /proc takes no file), and the writers failed only after the work, the
        # TensorBoard writer with a traceback from its own thread as well.
        with tempfile.TemporaryFile(dir=place):
            pass
    except OSError as err:
        reason = _REFUSED_BECAUSE.get(err.errno, f"takes no new file ({err.strerror})")
        raise ValueError(f"{name} {path} cannot be written: the folder {place} {reason}") from err
    return path


@contextmanager
def reading(path: str | Path) -> Iterator[None]:
    """Turn the errors of a damaged or truncated archive (``.npz``, zip, gzip) read inside the
    block into a ``ValueError`` naming ``path``: the archive libraries' own messages ("File is
    not a zip file") do not say which file."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise ValueError(f"cannot read {path}: the file is damaged or truncated "
                         f"({type(err).__name__}: {err})") from err


@contextmanager
def open_npz(path: str | Path) -> Iterator[Any]:
    """The open ``.npz`` archive at ``path`` (a ``numpy.lib.npyio.NpzFile``; arrays only, never
    pickles), read inside :func:`reading`, so a truncated array read in the block is named too.

    Raises:
        FileNotFoundError: there is no ``path``.
        ValueError: naming ``path``, when it is damaged, truncated, a pickle or a single
            ``.npy`` array (numpy's own message would suggest loading it as a pickle).
    """
    if not Path(path).exists():
        raise FileNotFoundError(f".npz file not found: {path}")
    with reading(path), ExitStack() as opened:
        try:
            # Opened here, not by np.load(path): numpy leaves a file it opened unclosed when
            # the archive in it is damaged (a handle held until garbage collection, and a
            # ResourceWarning).
            file = opened.enter_context(open(path, "rb"))
            archive = np.load(file, allow_pickle=False)
        except OSError as err:
            raise ValueError(f"{path}: not a readable .npz file ({err})") from err
        except ValueError as err:  # numpy's "contains pickled data ... load it unsafely"
            raise ValueError(f"{path}: not a readable .npz file (not a zip of arrays)") from err
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not a readable .npz file (a single .npy array, not an "
                             "archive)")
        with archive:
            yield archive


def read_npy(path: str | Path) -> np.ndarray:
    """The array in the ``.npy`` file at ``path`` (numeric, never a pickle).

    ``np.load`` would return an ``.npz`` archive under a ``.npy`` name as an open archive
    (which its callers then fail on with an ``AttributeError``, its file left open); here it
    is refused as any other file that is not an ``.npy`` array is.

    Raises:
        OSError: the file cannot be opened.
        ValueError: numpy's own message, when the file is not an ``.npy`` array, holds
            Python objects, is truncated, or its header declares an array larger than memory
            (callers add the file's name).
    """
    with open(path, "rb") as file:
        try:
            with _npy_header_parsed():
                return np.lib.format.read_array(file, allow_pickle=False)
        except MemoryError as err:  # numpy allocates what the header declares before reading
            raise ValueError(f"its header declares more than memory holds ({err})") from err


def npz_array(archive: Any, key: str, path: str | Path) -> Any:
    """Array ``key`` of the open ``.npz`` ``archive`` (a ``numpy.lib.npyio.NpzFile``), or a
    ``ValueError`` naming ``path`` and ``key`` where numpy's own ("Object arrays cannot be
    loaded when allow_pickle=False") names neither: an array of Python objects, never
    unpickled; a member that is not a ``.npy`` array."""
    try:
        with _npy_header_parsed():
            array = archive[key]
    except ValueError as err:
        # Names from pandas (`.unique()`) or a list of mixed types are saved as Python objects:
        # numpy's line alone did not say how to save them so that they load.
        remedy = ("; it holds Python objects, never unpickled here: save numbers as a numeric "
                  "array and names as text (`np.asarray(names, dtype=str)`)"
                  if "Object arrays" in str(err) else "")
        raise ValueError(f"cannot read array {key!r} of {path}: {err}{remedy}") from err
    except MemoryError as err:  # numpy allocates what the header declares before reading
        raise ValueError(f"cannot read array {key!r} of {path}: its header declares more than "
                         f"memory holds ({err})") from err
    # numpy hands such a member over as its bytes: they were counted as images (npz_length),
    # or failed as images with a traceback ('bytes' object has no attribute 'dtype').
    if not isinstance(array, np.ndarray):
        raise ValueError(f"cannot read array {key!r} of {path}: it is not a .npy array")
    return array


def npz_length(archive: Any, key: str, path: str | Path) -> int:
    """``len`` of array ``key`` of the open ``.npz`` ``archive`` (as :func:`npz_array`), read
    from its ``.npy`` header: reading the array decompresses all of it (a 50,000-image CIFAR-10
    file: 150 MB to count its images). An array the header does not settle (not a plain
    ``.npy`` member, a header version numpy reads no other way, no first axis, Python
    objects) is read as :func:`npz_array` reads it, with its errors."""
    shape = npz_shape(archive, key)
    return shape[0] if shape else len(npz_array(archive, key, path))


def npz_shape(archive: Any, key: str) -> tuple[int, ...] | None:
    """The shape of array ``key`` of the open ``.npz`` ``archive`` from its ``.npy`` header,
    without decompressing the array; ``None`` where the header does not settle it (no such
    member, not a plain ``.npy`` one, a header version numpy reads no other way, Python
    objects)."""
    try:
        with archive.zip.open(f"{key}.npy") as member:
            header = _npy_header(member)
    except (KeyError, ValueError):  # no such member, or not a .npy one
        return None
    return None if header is None or header[2].hasobject else header[0]


def npy_shape(path: str | Path) -> tuple[int, ...] | None:
    """The shape of the ``.npy`` array at ``path`` from its header, without reading the array;
    ``None`` where the header does not settle it (as :func:`npz_shape`). ``OSError`` where the
    file cannot be opened, ``ValueError`` where it is no ``.npy`` array."""
    with open(path, "rb") as file:
        header = _npy_header(file)
    return None if header is None or header[2].hasobject else header[0]


def _npy_header(file: Any) -> tuple[tuple[int, ...], bool, np.dtype] | None:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` array ``file`` holds (a file or an
    archive's member, at its start; left at the array's first byte), or ``None`` for a header
    version numpy reads no other way. ``ValueError`` where it is no ``.npy`` array."""
    version = np.lib.format.read_magic(file)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read_header is None:
        return None
    with _npy_header_parsed():
        return read_header(file)


@contextmanager
def _npy_header_parsed() -> Iterator[None]:
    """numpy parses an ``.npy`` header with Python's tokenizer, whose ``TokenError`` on a
    damaged one (a brace left open: 'EOF in multi-line statement') escapes numpy as itself,
    not as the ``ValueError`` numpy raises for other bad headers; here it is that
    ``ValueError``."""
    try:
        yield
    except tokenize.TokenError as err:
        raise ValueError(f"its .npy header is damaged ({err.args[0]})") from err


def read_leading(file: Any, count: int, *, min_ndim: int) -> np.ndarray | None:
    """The first ``count`` entries (along axis 0) of the ``.npy`` array of at least
    ``min_ndim`` axes that ``file`` holds (a file or an archive's member, at its start), read
    without the rest: an evaluation of the first 4 of 2,000 64^3 grids decompressed all 524 MB
    of them first. ``None`` where the header does not settle it (fewer axes, Fortran order,
    Python objects, a header version numpy reads no other way): the caller reads the whole
    array as it does without a count.

    Raises:
        ValueError: not a ``.npy`` array, or one that ends before the entries asked for.
    """
    header = _npy_header(file)
    if header is None:
        return None
    shape, fortran_order, dtype = header
    if len(shape) < min_ndim or fortran_order or dtype.hasobject:
        return None
    array = np.empty((min(count, shape[0]), *shape[1:]), dtype=dtype)
    if file.readinto(array.reshape(-1).view(np.uint8)) != array.nbytes:
        raise ValueError(f"the array ends before its first {len(array)} entries")
    return array


def class_numbers(labels: np.ndarray, name: str) -> np.ndarray:
    """The class numbers ``labels`` (any shape) as int64: integers as they are, and floats
    whose every value is a whole number (MATLAB and pandas store classes as doubles: 3.0 is
    class 3; :func:`check_whole_labels` takes tensors so). ``ValueError`` naming ``name``
    for fractions, NaN or infinities, values past float's whole numbers (2^53) or int64, and
    any other kind (bool, text)."""
    if labels.dtype.kind == "u" and labels.size and labels.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} must be class numbers, got {labels.max()}")
    if labels.dtype.kind in "iu":
        return labels.astype(np.int64)
    if labels.dtype.kind != "f":
        raise ValueError(f"{name} must be integer class numbers, got {labels.dtype}")
    if not np.isfinite(labels).all():
        raise ValueError(f"{name} must be whole class numbers, got NaN or infinite values")
    if not (labels == np.round(labels)).all():
        raise ValueError(f"{name} must be whole class numbers, got fractions ({labels.dtype})")
    if labels.size and np.abs(labels).max() > 2.0**53:
        extreme = labels.flat[np.abs(labels).argmax()]
        raise ValueError(f"{name} must be class numbers, got {extreme:.3g}")
    return labels.astype(np.int64)


def check_cache_version(found: object, expected: int, path: str | Path, *, rebuild: str) -> None:
    """``ValueError`` unless a cache's stored ``format_version`` ``found`` is ``expected``: a
    cache of another layout would be misread silently. ``rebuild`` says how to make one."""
    if found is None or int(found) != expected:  # type: ignore[call-overload]
        raise ValueError(f"{path} is a cache of format version {found}, this stgconv reads "
                         f"version {expected}: rebuild it with {rebuild}")
