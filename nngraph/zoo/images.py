"""Image sources for the zoos: scikit-learn's digits (ships with the package) or arrays on disk.

Nothing is downloaded. A user with MNIST/CIFAR can save ``np.savez(path, images=..., labels=...)`` and
pass the path: ``images`` of shape ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` (C in {1, 3}),
uint8 in [0, 255] or float in [0, 1]; ``labels`` of shape ``(N,)`` with integer classes.
"""
from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ImageSet", "load_images", "coordinate_grid"]


@dataclass(frozen=True)
class ImageSet:
    """Images in [0, 1] and their integer labels.

    Attributes:
        images: ``(N, C, H, W)`` float32.
        labels: ``(N,)`` int64.
        source: ``"digits"`` or the path the arrays came from.
        fingerprint: sha256 of the source arrays (so a resumed zoo can tell its data changed).
    """

    images: torch.Tensor
    labels: torch.Tensor
    source: str
    fingerprint: str

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1


def _from_arrays(images: np.ndarray, labels: np.ndarray, source: str = "arrays") -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (N, C, H, W) float32 in [0, 1], labels (N,) int64)``; :class:`ValueError` naming ``source`` and
    what is wrong: no images, a non-finite pixel (naming the image), pixels outside [0, 1], labels that are not
    integer classes >= 0, or counts that differ."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype.kind not in "uifb" or labels.dtype.kind not in "uifb":
        raise ValueError(f"{source}: images ({images.dtype}) and labels ({labels.dtype}) must be numeric arrays")
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    x = x.float()
    if x.dim() == 3:  # (N, H, W)
        x = x.unsqueeze(1)  # (N, 1, H, W)
    elif x.dim() == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    elif x.dim() != 4:
        raise ValueError(f"{source}: images must have shape (N, H, W), (N, H, W, C) or (N, C, H, W); got "
                         f"{tuple(x.shape)}")
    if x.shape[0] == 0 or x[0].numel() == 0:
        raise ValueError(f"{source} holds no images (shape {tuple(x.shape)}); a zoo needs at least one")
    finite = torch.isfinite(x.flatten(1)).all(1)  # (N,)
    if not finite.all():
        bad = torch.nonzero(~finite).flatten()
        raise ValueError(f"{source}: image {int(bad[0])} has NaN or infinite pixels ({len(bad)} of {len(x)} images "
                         "like this); an INR cannot be fitted to them")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"{source}: float images must lie in [0, 1] (or pass uint8 in [0, 255]); they span "
                         f"[{float(x.min()):.3g}, {float(x.max()):.3g}]")
    raw = torch.as_tensor(labels).reshape(-1)
    if raw.dtype.is_floating_point:
        if not torch.isfinite(raw).all() or not torch.equal(raw, raw.round()):
            bad = int(torch.nonzero(~torch.isfinite(raw) | (raw != raw.round())).flatten()[0])
            raise ValueError(f"{source}: label {bad} is {float(raw[bad])!r}, not an integer class (labels are "
                             f"{raw.dtype}; save integer classes)")
    y = raw.long()
    if y.numel() != x.shape[0]:
        raise ValueError(f"{source}: {x.shape[0]} images but {y.numel()} labels")
    if (y < 0).any():
        bad = int(torch.nonzero(y < 0).flatten()[0])
        raise ValueError(f"{source}: label {bad} is {int(y[bad])}; labels are classes, integers >= 0")
    return x.contiguous(), y


def load_images(source: str = "digits", resolution: int | None = None) -> ImageSet:
    """Load images and resize them (bilinear) to ``resolution x resolution``.

    Args:
        source (str): ``"digits"`` (sklearn's 1,797 8x8 digits, intensities 0..16 scaled to [0, 1])
            or the path of an ``.npz`` file with ``images`` and ``labels``. (default: :obj:`"digits"`)
        resolution (int, optional): output side length; ``None`` keeps the native size.
    """
    if source == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        raw_x, raw_y = d.images / 16.0, d.target  # (N, 8, 8) in [0, 1]
    else:
        try:
            loaded = np.load(source, allow_pickle=False)
            if not hasattr(loaded, "files"):
                raise ValueError(f"a single array of shape {getattr(loaded, 'shape', '?')}, not an .npz of arrays")
            with loaded as f:
                raw_x, raw_y = f["images"], f["labels"]
        except FileNotFoundError:
            raise FileNotFoundError(f"image file {source!r} not found; pass 'digits' or an .npz path") from None
        except KeyError as e:
            raise KeyError(f"{source!r} must contain arrays 'images' and 'labels' ({e})") from None
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:  # a pickle, garbage, a truncated zip
            raise ValueError(f"{source!r} is not an .npz of arrays 'images' and 'labels' ({e})") from None
    digest = hashlib.sha256()
    for a in (np.ascontiguousarray(raw_x), np.ascontiguousarray(raw_y)):
        digest.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    x, y = _from_arrays(raw_x, raw_y, source if source == "digits" else repr(source))
    if resolution is not None and tuple(x.shape[-2:]) != (resolution, resolution):
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
        x = x.clamp(0, 1)  # (N, C, R, R)
    return ImageSet(images=x.contiguous(), labels=y, source=source, fingerprint=digest.hexdigest())


def coordinate_grid(height: int, width: int) -> torch.Tensor:
    """Pixel coordinates in ``[-1, 1]^2``, row-major: ``grid[i * width + j] = (x_j, y_i)``.

    Shapes:
        - **output:** :math:`(H \\cdot W, 2)`, column 0 the horizontal coordinate ``x``,
          column 1 the vertical ``y``.
    """
    ys = torch.linspace(-1.0, 1.0, height)
    xs = torch.linspace(-1.0, 1.0, width)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
    return torch.stack([gx, gy], dim=-1).reshape(height * width, 2)  # (H*W, 2)
