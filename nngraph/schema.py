"""The neural-graph format shared by the converters and the encoder.

A neural graph is a :class:`torch_geometric.data.Data` with these fields
(``N`` nodes, ``E`` edges, ``W`` kernel entries: the sum over edges of ``prod(kernel_shape[e])``):

==================  ===============  ==============================================================
field               shape / dtype    meaning
==================  ===============  ==============================================================
``x``               ``(N, 5)`` float node features, named by :data:`NODE_FEATURES` (zeros where absent)
``node_type``       ``(N,)`` long    :class:`NodeType`: input / hidden / output
``node_kind``       ``(N,)`` long    :class:`NodeKind`: what produced the neuron (linear, conv, norm, ...)
``io_position``     ``(N,)`` long    position of an input or output neuron in its tensor, ``-1`` for hidden
``layer``           ``(N,)`` long    depth of the neuron's activation space (inputs are 0)
``act``             ``(N,)`` long    :class:`Activation` applied to the neuron's value (0 = none)
``edge_index``      ``(2, E)`` long  source -> target, in the direction data flows through the model
``edge_type``       ``(E,)`` long    :class:`EdgeType`
``kernel_shape``    ``(E, 3)`` int32 the ``(depth, height, width)`` of each edge's kernel, at its own
                                     size: ``(1, 1, 1)`` for a Linear weight and identity edges,
                                     ``(1, kh, kw)`` for a Conv2d, ``(1, 1, k)`` / ``(kd, kh, kw)``
                                     for Conv1d / Conv3d, ``(1, h, w)`` for a Linear after a flatten
``edge_attr``       ``(W, 1)`` float every edge's kernel, flattened in C order, the edges one after
                                     another in edge order; nothing is padded. Edge ``e``'s kernel
                                     is rows ``offset[e] : offset[e] + prod(kernel_shape[e])`` with
                                     ``offset`` the exclusive cumulative sum of the kernel sizes
                                     (:func:`nngraph.kernels.kernel_offsets`). When every kernel is
                                     1x1 (MLPs, SIRENs), ``W == E`` and row ``e`` is edge ``e``'s
                                     weight. Identity edges (residual sums, norms, activations) hold 1
==================  ===============  ==============================================================

No offsets are stored and no field needs a custom increment, so a plain PyG ``DataLoader`` (or
``Batch.from_data_list``) batches graphs of any architectures and kernel sizes: the batch's
``edge_attr`` is the graphs' rows one after another, matching its ``kernel_shape``. Rows of
``edge_attr`` are kernel entries, not edges: PyG's edge-level utilities (``subgraph``,
``coalesce``, ...) apply to it only when ``W == E``; :mod:`nngraph.kernels` has the helpers
(``entry_edges``, ``expand_to_entries``, ``reorder_kernels``, ``edge_kernels``). ``edge_index``,
``edge_type`` and ``kernel_shape`` of a converted graph are shared with its cached layout: clone
before editing them in place.

(``io_position`` avoids the substring ``index``: PyG shifts such fields by the node count when
batching.)

Hidden neurons carry nothing that depends on their position inside their layer, so relabelling
hidden neurons of the model relabels the nodes of the graph and nothing else.
"""
from __future__ import annotations

from enum import IntEnum

#: Names of the columns of ``data.x``.
NODE_FEATURES = ("bias", "norm_weight", "norm_bias", "running_mean", "running_var")
NODE_FEATURE_DIM = len(NODE_FEATURES)
BIAS, NORM_WEIGHT, NORM_BIAS, RUNNING_MEAN, RUNNING_VAR = range(NODE_FEATURE_DIM)


class NodeType(IntEnum):
    """Whether a neuron is a model input, an output, or hidden (permutable)."""

    INPUT = 0
    HIDDEN = 1
    OUTPUT = 2


class NodeKind(IntEnum):
    """What produced the neuron; invariant under permutations of hidden neurons."""

    INPUT = 0  # a feature of the model's input tensor
    LINEAR = 1  # output neuron of nn.Linear
    CONV = 2  # output channel of a convolution
    NORM = 3  # output of a per-neuron affine normalization (BatchNorm, LayerNorm, GroupNorm)
    SUM = 4  # output of a residual addition
    ACTIVATION = 5  # output of an activation applied to a value that is also used raw elsewhere
    EMBEDDING = 6  # embedding dimension (the output of nn.Embedding)
    TOKEN = 7  # one vocabulary entry of nn.Embedding (an input neuron)
    QUERY = 8  # attention query dimension
    KEY = 9  # attention key dimension
    VALUE = 10  # attention value dimension
    HEAD = 11  # one attention head (groups its query/key/value neurons)
    GROUP = 12  # one GroupNorm group (groups its channels)


NUM_NODE_KINDS = len(NodeKind)


class EdgeType(IntEnum):
    """How two neurons are related."""

    WEIGHT = 0  # a learned weight or kernel (Linear, Conv, Embedding, attention projections)
    RESIDUAL = 1  # operand -> sum of a residual addition (identity)
    NORM = 2  # input -> output of a per-neuron normalization (identity)
    ACTIVATION = 3  # input -> output of an activation (identity)
    QK_PAIR = 4  # query dim j -> key dim j of the same head (their product is summed)
    HEAD_MEMBER = 5  # head -> its query / key / value neurons
    GROUP_MEMBER = 6  # GroupNorm group -> its channels
    CONCAT = 7  # reserved for structural copies


NUM_EDGE_TYPES = len(EdgeType)


class Activation(IntEnum):
    """Element-wise nonlinearities recorded on the neurons they act on."""

    NONE = 0
    RELU = 1
    GELU = 2
    SILU = 3
    TANH = 4
    SIGMOID = 5
    SINE = 6
    LEAKY_RELU = 7
    ELU = 8
    SOFTPLUS = 9
    OTHER = 10


NUM_ACTIVATIONS = len(Activation)
