"""Rendering INRs from batched graph features, differentiably: the module's own forward on the pixel grid.

Parameters come out of the features with the layout's :meth:`~nngraph.convert.Layout.gather_params` and the
INR runs through :func:`nngraph.batched_forward` (``torch.func.functional_call`` on the template module,
vectorised over the graphs), so any architecture the converter handles renders, and a loss on the images
trains a model that edits ``x`` / ``edge_attr``. The graphs of a batch share one architecture (the
template's) and are stored one after another (as a PyG ``Batch`` of them is).
"""
from __future__ import annotations

import math

import torch
from torch import nn

import nngraph
from nngraph.zoo.inr_meta import INRMetadata

__all__ = ["INRRenderer", "render_module", "render_ensemble", "dilate"]


class INRRenderer:
    """Renders batched INRs (coordinates ``(P, D)`` -> values ``(P, C)``) of ``template``'s architecture.

    Args:
        template: an INR of the zoo's architecture (``nngraph.zoo.build_model(spec)``); its own
            values are not used.
        resolution: side length of the rendered image.
        inr: the zoo's coordinates (``INRMetadata.of_zoo(zoo.config)``). (default: ``[-1, 1]^2`` in
            ``(x, y)``, the zoos built here)
    """

    def __init__(self, template: nn.Module, resolution: int, inr: INRMetadata | None = None):
        self.template = template
        self.layout = nngraph.build_layout(template)
        self.names = [n for n, _ in template.named_parameters()]
        self.shapes = {n: tuple(p.shape) for n, p in template.named_parameters()}
        placed = {p.name for p in self.layout.node_placements} | {p.name for p in self.layout.edge_placements}
        missing = [n for n in self.names if n not in placed]
        if missing:
            raise ValueError(f"the layout places no entries of {missing}")
        self.resolution = resolution
        self.coords = (inr or INRMetadata()).grid(resolution, resolution)  # (P, 2)

    def params(self, x: torch.Tensor, edge_attr: torch.Tensor, num_graphs: int) -> dict[str, torch.Tensor]:
        """``{name: (B, *shape)}``: every graph's parameters (differentiable in ``x`` / ``edge_attr``)."""
        params = self.layout.gather_params(x, edge_attr)
        if len(params) and next(iter(params.values())).shape[0] != num_graphs:
            raise ValueError(f"the features hold {next(iter(params.values())).shape[0]} graphs, not {num_graphs}")
        return params

    def render_params(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, C, H, W)`` images of stacked parameters ``{name: (B, *shape)}``."""
        device = next(iter(params.values())).device
        out = nngraph.batched_forward(self.template, params, self.coords.to(device))  # (B, P, C)
        b, _, c = out.shape
        return out.transpose(1, 2).reshape(b, c, self.resolution, self.resolution)  # (B, C, H, W)

    def __call__(self, x: torch.Tensor, edge_attr: torch.Tensor, num_graphs: int) -> torch.Tensor:
        """``(B, C, H, W)`` images of the INRs whose weights are in ``(x, edge_attr)``."""
        return self.render_params(self.params(x, edge_attr, num_graphs))

    def ensemble(self, xs: torch.Tensor, edge_attrs: torch.Tensor, num_graphs: int) -> torch.Tensor:
        """``(B, C, H, W)``: the pixel-wise mean of the ``k`` INRs of every graph.

        ``xs`` ``(k, N, F)`` and ``edge_attrs`` ``(k, W, 1)`` hold the features of the ``k`` members (as
        :func:`tasks.common.models.apply_deltas` stacks them); all ``k * B`` INRs render in one vectorised call.
        """
        if xs.dim() != 3 or edge_attrs.dim() != 3 or xs.shape[0] != edge_attrs.shape[0]:
            raise ValueError(f"ensemble features must be (k, N, F) and (k, W, 1), got {tuple(xs.shape)} and "
                             f"{tuple(edge_attrs.shape)}")
        k = xs.shape[0]
        members = [self.params(x, e, num_graphs) for x, e in zip(xs, edge_attrs)]  # k x {name: (B, *shape)}
        if k == 1:  # the single INR itself, rendered as __call__ renders it (no copy, the same kernels)
            return self.render_params(members[0])
        params = {n: torch.cat([m[n] for m in members]) for n in members[0]}  # {name: (k * B, *shape)}
        images = self.render_params(params)  # (k * B, C, H, W), member-major
        return images.view(k, num_graphs, *images.shape[1:]).mean(0)  # (B, C, H, W)

    @property
    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.shapes.values())

    def flat(self, x: torch.Tensor, edge_attr: torch.Tensor, num_graphs: int) -> torch.Tensor:
        """``(B, num_params)``: every graph's weight vector, in ``template.named_parameters()`` order."""
        params = self.params(x, edge_attr, num_graphs)
        return torch.cat([params[n].reshape(num_graphs, -1) for n in self.names], dim=1)  # (B, P)

    def unflat(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inverse of :meth:`flat`: ``(B, num_params)`` -> ``{name: (B, *shape)}``."""
        out, start = {}, 0
        for name in self.names:
            size = math.prod(self.shapes[name])
            out[name] = flat[:, start:start + size].reshape(flat.shape[0], *self.shapes[name])  # (B, *shape)
            start += size
        return out


def render_module(module: nn.Module, resolution: int, inr: INRMetadata | None = None) -> torch.Tensor:
    """``(C, H, W)``: a real INR module evaluated on the pixel grid (of the zoo's coordinates ``inr``)."""
    coords = (inr or INRMetadata()).grid(resolution, resolution)  # (P, 2)
    with torch.no_grad():
        out = module(coords)  # (P, C)
    return out.t().reshape(-1, resolution, resolution)  # (C, H, W)


def render_ensemble(modules: list[nn.Module], resolution: int, inr: INRMetadata | None = None) -> torch.Tensor:
    """``(C, H, W)``: the pixel-wise mean of real INR modules (the members of one ensemble edit)."""
    if not modules:
        raise ValueError("an ensemble needs at least one module")
    return torch.stack([render_module(m, resolution, inr) for m in modules]).mean(0)  # (k, C, H, W) -> (C, H, W)


def dilate(images: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Grey-scale morphological dilation (a ``size x size`` max filter) of ``(B, C, H, W)`` images.

    Equals ``scipy.ndimage.grey_dilation(image, size=(size, size))`` (its reflecting border adds nothing
    to a max).
    """
    return nn.functional.max_pool2d(images, size, stride=1, padding=size // 2)
