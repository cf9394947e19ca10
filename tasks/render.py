"""Reading parameters out of batched graph features through the layout, and rendering SIRENs from them.

Everything here is differentiable in the graph features, so a loss on the rendered image trains a
model that edits ``x`` / ``edge_attr``. The graphs of a batch must share one architecture (the layout of
``template``) and be stored contiguously (as a PyG ``Batch`` of them is).
"""
from __future__ import annotations

import torch
from torch import nn

import nngraph
from nngraph.zoo import siren_forward
from nngraph.zoo.inr_meta import INRMetadata

__all__ = ["ParamGather", "SirenRenderer", "render_module", "dilate"]


class ParamGather:
    """Gathers every parameter of ``template``'s architecture from batched ``(x, edge_attr)``.

    Uses :func:`nngraph.build_layout`'s ``node_placements`` / ``edge_placements`` (where each parameter
    entry lives) with plain indexing, so gradients flow back into the features.

    Args:
        template: a model of the architecture (its values are not used).
    """

    def __init__(self, template: nn.Module):
        self.layout = nngraph.build_layout(template)
        self.names = [n for n, _ in template.named_parameters()]
        self.shapes = {n: tuple(p.shape) for n, p in template.named_parameters()}
        self.node = {p.name: p for p in self.layout.node_placements}
        self.edge = {p.name: p for p in self.layout.edge_placements}
        missing = [n for n in self.names if n not in self.node and n not in self.edge]
        if missing:
            raise ValueError(f"the layout places no entries of {missing}")

    @property
    def num_params(self) -> int:
        return sum(int(torch.tensor(s).prod()) for s in self.shapes.values())

    def params(self, x: torch.Tensor, edge_attr: torch.Tensor, num_graphs: int) -> list[torch.Tensor]:
        """Stacked parameters in ``template.named_parameters()`` order, each ``(B, *shape)``."""
        n, w = self.layout.num_nodes, self.layout.num_entries
        xb = x.reshape(num_graphs, n, x.shape[-1])  # (B*N, F) -> (B, N, F)
        eb = edge_attr.reshape(num_graphs, w)  # (B*W, 1) -> (B, W): every graph's kernel entries
        out = []
        for name in self.names:
            if name in self.node:
                p = self.node[name]
                value = xb[:, p.nodes.to(x.device), p.column]  # (B, numel)
            else:
                value = eb[:, self.edge[name].positions.to(x.device)]  # (B, numel)
            out.append(value.reshape(num_graphs, *self.shapes[name]))  # (B, *shape)
        return out

    def flat(self, x: torch.Tensor, edge_attr: torch.Tensor, num_graphs: int) -> torch.Tensor:
        """``(B, num_params)``: the flattened weight vector of every graph."""
        return torch.cat([p.reshape(num_graphs, -1) for p in self.params(x, edge_attr, num_graphs)], dim=1)

    def unflat(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Inverse of :meth:`flat`: ``(B, num_params)`` -> stacked parameters."""
        out, start = [], 0
        for name in self.names:
            shape = self.shapes[name]
            size = int(torch.tensor(shape).prod())
            out.append(flat[:, start:start + size].reshape(flat.shape[0], *shape))  # (B, *shape)
            start += size
        return out


class SirenRenderer:
    """Renders batched SIRENs (``Linear, Sine, ..., Linear``) from graph features or stacked parameters.

    Args:
        template: a SIREN of the zoo's architecture (``nngraph.zoo.build_model(siren_spec)``).
        resolution: side length of the rendered image.
        inr: the zoo's coordinates (``INRMetadata.of_zoo(zoo.config)``). (default: ``[-1, 1]^2`` in
            ``(x, y)``, the zoos built here)
    """

    def __init__(self, template: nn.Module, resolution: int, inr: INRMetadata | None = None):
        self.gather = ParamGather(template)
        sines = [m for m in template.modules() if isinstance(m, nngraph.Sine)]
        if not sines:
            raise ValueError("SirenRenderer needs a SIREN (nngraph.Sine activations)")
        self.w0 = sines[0].w0
        self.resolution = resolution
        self.coords = (inr or INRMetadata()).grid(resolution, resolution)  # (P, 2)

    def render_params(self, params: list[torch.Tensor]) -> torch.Tensor:
        """``(B, C, H, W)`` images of stacked parameters ``[W_0 (B, out, in), b_0 (B, out), ...]``."""
        out = siren_forward(params, self.coords.to(params[0].device), self.w0)  # (B, P, C)
        b, _, c = out.shape
        return out.transpose(1, 2).reshape(b, c, self.resolution, self.resolution)  # (B, C, H, W)

    def __call__(self, x: torch.Tensor, edge_attr: torch.Tensor, num_graphs: int) -> torch.Tensor:
        """``(B, C, H, W)`` images of the SIRENs whose weights are in ``(x, edge_attr)``."""
        return self.render_params(self.gather.params(x, edge_attr, num_graphs))


def render_module(module: nn.Module, resolution: int, inr: INRMetadata | None = None) -> torch.Tensor:
    """``(C, H, W)``: a real SIREN module evaluated on the pixel grid (of the zoo's coordinates ``inr``)."""
    coords = (inr or INRMetadata()).grid(resolution, resolution)  # (P, 2)
    with torch.no_grad():
        out = module(coords)  # (P, C)
    return out.t().reshape(-1, resolution, resolution)  # (C, H, W)


def dilate(images: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Grey-scale morphological dilation (a ``size x size`` max filter) of ``(B, C, H, W)`` images.

    Equals ``scipy.ndimage.grey_dilation(image, size=(size, size))`` (its reflecting border adds nothing
    to a max).
    """
    return nn.functional.max_pool2d(images, size, stride=1, padding=size // 2)
