"""Learned optimizers as ``torch.optim.Optimizer``\\ s: drop-in for Adam in a plain PyTorch loop."""
from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.profiler import record_function

from .checkpoint import load_network, network_to_dict, shipped_checkpoint
from .features import MomentState, Segments, advance_state, entry_features
from .graph_network import GraphUpdateNetwork
from .mlp_network import PerParameterUpdateNetwork
from .placement import parameter_names, place
from .relabel import relabel_graph

__all__ = ["LearnedOptimizer", "PerParameterMLPOptimizer"]


def _network(checkpoint, network: nn.Module | None, kind: str, default: type, who: str) -> nn.Module:
    if checkpoint is not None and network is not None:
        raise TypeError(f"{who}: give a checkpoint or a network, not both")
    if network is not None:
        if getattr(network, "kind", None) != kind:
            raise TypeError(f"{who} needs a {default.__name__}, got a {type(network).__name__}")
        return network
    return load_network(shipped_checkpoint(kind) if checkpoint is None else checkpoint, kind)


class _LearnedStep(torch.optim.Optimizer, metaclass=abc.ABCMeta):
    """What both learned optimizers share: the state (momenta per timescale, second moment), the features,
    applying the network's step times each group's ``lr``, and saving the network with the state."""

    who = "learned optimizer"

    def __init__(self, params: Iterable[Tensor], network: nn.Module, lr: float, total_steps: int | None = None):
        if lr <= 0:
            raise ValueError(f"{self.who}: lr multiplies the learned step and must be positive, got {lr}")
        if total_steps is not None and total_steps < 1:
            raise ValueError(f"{self.who}: total_steps is the run's number of steps and must be positive, got {total_steps}")
        if network.output.progress and total_steps is None:
            raise ValueError(f"{self.who}: this network follows a learned schedule over the run; give "
                             "total_steps=<the number of steps the run will take>")
        self.network, self.total_steps = network, total_steps
        self._segments_key: tuple | None = None
        super().__init__(params, dict(lr=lr))

    # ------------------------------------------------------------ the step
    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def _segments(self, params: Sequence[Tensor]) -> Segments:
        key = tuple(id(p) for p in params)
        if key != self._segments_key:
            self._segments_cache = Segments([p.numel() for p in params])
            self._segments_key = key
        return self._segments_cache

    @abc.abstractmethod
    def _network_step(self, features: Tensor, segments: Segments, params: Sequence[Tensor],
                      progress: Tensor | None) -> Tensor:
        """``(P,)``: the network's step for the entries of ``params`` from their features ``(P, C)`` (and the
        fraction of the run every entry has done, ``(P,)``, for a network with a schedule)."""

    @torch.no_grad()
    def step(self, closure=None):
        """One step of every parameter that has a gradient (the others keep their values and state)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = self._params()
        if not params:
            return loss
        betas = self.network.betas
        dtype = self.network.output.log_lr.dtype
        for p in params:
            if p.grad is not None and p.grad.is_sparse:
                raise RuntimeError(f"{self.who} does not take sparse gradients")
            state = self.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["momenta"] = torch.zeros((len(betas), *p.shape), dtype=p.dtype, device=p.device)
                state["second"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
        states = [self.state[p] for p in params]
        with record_function("lopt.features"):  # a stage of benchmarks/bench_optim.py's profile
            weight = torch.cat([p.detach().reshape(-1).to(dtype) for p in params])  # (P,)
            grad = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(dtype)
                              for p in params])  # (P,)
            moments = MomentState(
                torch.cat([s["step"].to(dtype).expand(p.numel()) for s, p in zip(states, params)]),  # (P,)
                torch.cat([s["momenta"].reshape(len(betas), -1).to(dtype) for s in states], dim=1),  # (K, P)
                torch.cat([s["second"].reshape(-1).to(dtype) for s in states]))  # (P,)
            moments = advance_state(moments, grad, betas)
            segments = self._segments(params)
            features = entry_features(weight, grad, moments, segments, betas)  # (P, C)
            progress = None
            if self.network.output.progress:  # steps done before this one, over the run's: 0 on the first step
                progress = ((moments.step - 1) / self.total_steps).clamp(0, 1)  # (P,)
        delta = self._network_step(features, segments, params, progress)  # (P,)
        with record_function("lopt.write_back"):
            lrs = torch.cat([torch.full((p.numel(),), float(g["lr"]), dtype=dtype)
                             for g in self.param_groups for p in g["params"]])  # (P,)
            delta = delta * lrs
            offset = 0
            for p, s in zip(params, states):
                n = p.numel()
                if p.grad is not None:
                    p.add_(delta[offset:offset + n].view_as(p).to(p.dtype))
                    s["step"] += 1
                    s["momenta"].copy_(moments.momenta[:, offset:offset + n].reshape(s["momenta"].shape))
                    s["second"].copy_(moments.second[offset:offset + n].view_as(p))
                offset += n
        return loss

    # ------------------------------------------------------------ saving
    def state_dict(self) -> dict:
        """The optimizer's state (``state``, ``param_groups``) and its update network (``network``)."""
        out = super().state_dict()
        out["network"] = network_to_dict(self.network)
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        record = state_dict.pop("network", None)
        if record is not None:  # the saved network, whatever its size (this optimizer's may be a fresh default)
            network = load_network(record, self.network.kind)
            if network.output.progress and self.total_steps is None:
                raise ValueError(f"{self.who}: the saved network follows a learned schedule over the run; make this "
                                 "optimizer with total_steps=<the number of steps the run will take>")
            self.network = network
        super().load_state_dict(state_dict)


class LearnedOptimizer(_LearnedStep):
    r"""A learned optimizer that reads the model as a neural graph: every step, the weights, the gradient
    and momenta at several timescales (each normalised per tensor,
    :func:`~nngraph.optim.features.entry_features`) are placed on the model's graph, built once from the
    layout cache (:func:`nngraph.build_layout`), and an equivariant :class:`GraphUpdateNetwork` gives every
    parameter entry its step. Relabelling the model's hidden neurons permutes the steps alike.

    Use it like any optimizer::

        opt = LearnedOptimizer(model, total_steps=len(loader))  # the shipped meta-trained network
        for x, y in loader:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()

    Without a checkpoint it loads the meta-trained network shipped with nngraph
    (:func:`~nngraph.optim.shipped_checkpoint`); ``network=GraphUpdateNetwork(init_lr=lr)`` is an untrained one,
    whose step is Adam's (``betas=(0.9, 0.999)``, learning rate ``lr``; see
    :class:`~nngraph.optim.output.StepOutput`). Meta-train one with ``python -m tasks.learned_optimizer``.

    Args:
        model (nn.Module): the model whose parameters are optimized; any model :func:`nngraph.to_graph` converts.
        checkpoint (str or dict, optional): a file of :func:`~nngraph.optim.save_network` (safetensors, or
            read with ``torch.load(weights_only=True)``) or its record. (default: :obj:`None`, the shipped one)
        params (iterable of Tensor or dicts, optional): the parameters to optimize, or param groups (each
            with its own ``lr``); all must be parameters of ``model``. (default: those of ``model`` that
            require a gradient)
        example_inputs (tuple of Tensor, optional): inputs to trace the model with, when its first layer does
            not tell their shape. (default: :obj:`None`)
        lr (float): multiplies the learned step (schedulers act on it). (default: :obj:`1.0`)
        total_steps (int, optional): the number of steps the run will take, for a network that follows a learned
            schedule (``network.output.progress``; it reads the fraction of the run done, held at 1 past the end);
            required by such a network, ignored by others. (default: :obj:`None`)
        relabel (bool): list the graph's nodes and edges in a new random order every step (the twin that shows
            the steps do not depend on the labels). (default: :obj:`False`)
        network (GraphUpdateNetwork, optional): the update network itself, instead of a checkpoint.
        generator (torch.Generator, optional): random source of ``relabel``.

    Raises:
        UnsupportedError: one line, for a model the converter refuses.
        ValueError: one line, for a tensor of ``params`` that is not a parameter of ``model``.
    """

    who = "LearnedOptimizer"

    def __init__(self, model: nn.Module, checkpoint: str | os.PathLike | dict | None = None, *,
                 params: Iterable | None = None, example_inputs: Sequence[Tensor] | Tensor | None = None,
                 lr: float = 1.0, total_steps: int | None = None, relabel: bool = False,
                 network: GraphUpdateNetwork | None = None, generator: torch.Generator | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"LearnedOptimizer(model, ...) needs the nn.Module itself (its graph is built from it), "
                            f"got a {type(model).__name__}; for a bare list of tensors use PerParameterMLPOptimizer")
        self.model, self.example_inputs = model, example_inputs
        self.relabel, self.generator = relabel, generator
        self._placement_key: tuple | None = None
        params = [p for p in model.parameters() if p.requires_grad] if params is None else params
        super().__init__(params, _network(checkpoint, network, "graph", GraphUpdateNetwork, self.who), lr, total_steps)
        self._place()

    def add_param_group(self, param_group: dict) -> None:
        """As :meth:`torch.optim.Optimizer.add_param_group`, refusing tensors that are not the model's."""
        group_params = param_group["params"]
        group_params = [group_params] if isinstance(group_params, Tensor) else list(group_params)
        parameter_names(self.model, group_params, self.who)
        super().add_param_group({**param_group, "params": group_params})

    def _place(self):
        params = self._params()
        key = tuple(id(p) for p in params)
        if key != self._placement_key:
            self.graph, self.placement = place(self.model, params, self.example_inputs, self.who)
            self._placement_key = key
        return self.graph, self.placement

    def _network_step(self, features: Tensor, segments: Segments, params: Sequence[Tensor],
                      progress: Tensor | None) -> Tensor:
        with record_function("lopt.graph"):  # the graph from the layout cache (built on the first step only)
            graph, placement = self._place()
        if self.relabel:
            graph, node_map, entry_map = relabel_graph(graph, self.generator)
            placement = placement.relabelled(node_map, entry_map)
        return self.network(features, segments, graph, placement, progress)  # (P,)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({type(self.model).__name__}, {self.network!r}, "
                f"{len(self._params())} tensors, relabel={self.relabel})")


class PerParameterMLPOptimizer(_LearnedStep):
    r"""The per-parameter learned optimizer of `Metz et al. (2022) <https://arxiv.org/abs/2203.11860>`_: the same
    features and output as :class:`LearnedOptimizer`, one small MLP per entry and no graph (no entry sees the
    rest of its model). Works on any tensors.

    Args:
        params (nn.Module, or iterable of Tensor or dicts): a model (its parameters that require a gradient),
            parameters or param groups.
        checkpoint (str or dict, optional): a file of :func:`~nngraph.optim.save_network`. (default: the
            shipped one, meta-trained with the same budget as :class:`LearnedOptimizer`'s)
        lr (float): multiplies the learned step. (default: :obj:`1.0`)
        total_steps (int, optional): the number of steps the run will take, as for :class:`LearnedOptimizer`.
        network (PerParameterUpdateNetwork, optional): the update network itself, instead of a checkpoint.
    """

    who = "PerParameterMLPOptimizer"

    def __init__(self, params: nn.Module | Iterable, checkpoint: str | os.PathLike | dict | None = None, *,
                 lr: float = 1.0, total_steps: int | None = None, network: PerParameterUpdateNetwork | None = None):
        if isinstance(params, nn.Module):
            params = [p for p in params.parameters() if p.requires_grad]
        super().__init__(params, _network(checkpoint, network, "mlp", PerParameterUpdateNetwork, self.who), lr,
                         total_steps)

    def _network_step(self, features: Tensor, segments: Segments, params: Sequence[Tensor],
                      progress: Tensor | None) -> Tensor:
        return self.network(features, segments, progress=progress)  # (P,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.network!r}, {len(self._params())} tensors)"
