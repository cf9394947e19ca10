"""``nngraph.generate``: new weights for an architecture, sampled from generators fitted on a zoo.

A generator is fitted on graphs of one architecture (the template) with one condition per model (a target
accuracy, a class, or none), and samples graphs of that architecture that :func:`nngraph.from_graph` turns into
modules::

    gen = FlowGenerator()                                   # the equivariant encoder as denoiser
    gen.fit(graphs, accuracies, template=model, out_dir="runs/gen")   # resumable, checkpoints in out_dir
    samples = gen.sample(model, 16, condition=0.9)          # 16 graphs; a graph of another architecture is an error
    modules = [nngraph.from_graph(g, model) for g in samples]
    gen = load_generator("runs/gen/generator.pt")           # torch.load(weights_only=True)

- :class:`FlowGenerator`: flow matching in per-tensor normalised weight space (:mod:`nngraph.generate.flow` says
  why), with the equivariant :class:`GraphDenoiser` or its twin without equivariance, :class:`FlatDenoiser`
  (``FlowGenerator(denoiser="flat")``);
- :class:`LatentFlowGenerator`: the same flow on low-rank codes of the zoo's models aligned by weight matching,
  samples relabelled at random (:mod:`nngraph.generate.latent` says why: it is the one whose samples work);
- :class:`GaussianGenerator`: the statistics baseline, a Gaussian per parameter tensor;
- the pieces: :class:`WeightSpace` (graphs <-> weight vectors), :class:`TensorStats` (per-tensor normalisation),
  :class:`ConditionEncoder`, and the graph denoiser's layers :class:`WeightMessage`, :class:`EndpointProduct`,
  :class:`FiLM` (:mod:`nngraph.generate.layers`).
"""
from .base import GENERATORS, WeightGenerator, load_generator, register_generator
from .condition import ConditionEncoder
from .denoisers import DENOISERS, FlatDenoiser, GraphDenoiser
from .flow import FlowGenerator
from .gaussian import GaussianGenerator
from .latent import LatentFlowGenerator, align_zoo
from .layers import EndpointProduct, FiLM, WeightMessage
from .normalize import TensorStats
from .space import WeightSpace

__all__ = [
    "ConditionEncoder",
    "DENOISERS",
    "EndpointProduct",
    "FiLM",
    "FlatDenoiser",
    "FlowGenerator",
    "GENERATORS",
    "GaussianGenerator",
    "GraphDenoiser",
    "LatentFlowGenerator",
    "TensorStats",
    "WeightGenerator",
    "WeightMessage",
    "WeightSpace",
    "align_zoo",
    "load_generator",
    "register_generator",
]
