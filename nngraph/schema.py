"""The neural-graph format shared by the converters and the encoder.

A neural graph is a :class:`torch_geometric.data.Data` with these fields
(``N`` nodes, ``E`` edges, ``W`` kernel entries: the sum over edges of ``prod(kernel_shape[e])``):

==================  ================  ==============================================================
field               shape / dtype     meaning
==================  ================  ==============================================================
``x``               ``(N, 5)`` float  node features, named by :data:`NODE_FEATURES` (zeros where absent)
``node_type``       ``(N,)`` long     :class:`NodeType`: input / hidden / output
``node_kind``       ``(N,)`` long     :class:`NodeKind`: what produced the neuron (linear, conv, norm, ...)
``io_position``     ``(N,)`` long     position of an input or output neuron in its tensor, ``-1`` for hidden
``layer``           ``(N,)`` long     depth of the neuron's activation space (inputs are 0)
``act``             ``(N,)`` long     :class:`Activation` applied to the neuron's value (0 = none)
``act_args``        ``(N, 2)`` float  the activation's parameters, columns by kind in :data:`ACT_ARGS`
                                      (zeros for activations without parameters and for none)
``conv_args``       ``(N, 17)``       how the convolution that made the neuron walks over positions,
                    float             columns :data:`CONV_ARGS` (zeros for every non-conv neuron)
``pool``            ``(N, 3)`` long   :class:`Pool` kinds of up to :data:`MAX_POOLS` poolings or spatial
                                      reductions applied to the neuron's value, in order (0 = none)
``pool_args``       ``(N, 3, 17)``    the parameters of each of them, columns :data:`POOL_ARGS` (per
                    float             kind, see :class:`Pool`; zeros for an empty slot)
``norm_eps``        ``(N,)`` float     the ``eps`` of the normalization that made the neuron (``0`` for
                                      none): LayerNorm with eps 1e-5 and with eps 1.0 are two functions
``op_code``         ``(N, 2)`` long   operations named by no converter (:mod:`nngraph.convert.fallback`):
                                      column 0 the operation's category (``1 .. OP_CATEGORIES - 1``, a
                                      hash of its name, ``0`` = none), column 1 a 62-bit fingerprint of
                                      its constant arguments and shapes (two functions, two graphs)
``edge_index``      ``(2, E)`` long   source -> target, in the direction data flows through the model
``edge_type``       ``(E,)`` long     :class:`EdgeType`
``kernel_shape``    ``(E, 3)`` int32  the ``(depth, height, width)`` of each edge's kernel, at its own
                                      size: ``(1, 1, 1)`` for a Linear weight and identity edges,
                                      ``(1, kh, kw)`` for a Conv2d, ``(1, 1, k)`` / ``(kd, kh, kw)``
                                      for Conv1d / Conv3d, ``(1, h, w)`` for a Linear after a flatten
``edge_attr``       ``(W, 1)`` float  every edge's kernel, flattened in C order, the edges one after
                                      another in edge order; nothing is padded. Edge ``e``'s kernel
                                      is rows ``offset[e] : offset[e] + prod(kernel_shape[e])`` with
                                      ``offset`` the exclusive cumulative sum of the kernel sizes
                                      (:func:`nngraph.kernels.kernel_offsets`). When every kernel is
                                      1x1 (MLPs, SIRENs), ``W == E`` and row ``e`` is edge ``e``'s
                                      weight. Identity edges (residual sums, norms, activations) hold
                                      1; SCALE edges and the edge from ``b`` of ``a - b`` hold their
                                      number (``-1``)
``input_spec``      list              ``[[shape, dtype name], ...]`` of the example inputs the model was
                                      traced with (lets ``from_graph`` rebuild the layout; a plain
                                      attribute, collected as a list when batching)
==================  ================  ==============================================================

No offsets are stored and no field needs a custom increment, so a plain PyG ``DataLoader`` (or
``Batch.from_data_list``) batches graphs of any architectures and kernel sizes: the batch's
``edge_attr`` is the graphs' rows one after another, matching its ``kernel_shape``. Rows of
``edge_attr`` are kernel entries, not edges: PyG's edge-level utilities (``subgraph``,
``coalesce``, ...) apply to it only when ``W == E``; :mod:`nngraph.kernels` has the helpers
(``entry_edges``, ``expand_to_entries``, ``reorder_kernels``, ``edge_kernels``). ``edge_index``,
``edge_type`` and ``kernel_shape`` of a converted graph are shared with its cached layout (no copy per graph);
an in-place edit of them is seen by the layout's version check (``Layout.edited``) and the next conversion
builds the layout afresh, so it never reaches another graph (edits through ``.data`` or NumPy bypass the check:
clone first).

Edges follow the data forward, except in recurrent layers (``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``): their
:attr:`EdgeType.RECURRENT` edges run from a layer's hidden units back to the rows of its own ``weight_hh``
(the previous step's state), so such graphs have cycles (:mod:`nngraph.convert.recurrent`).

(``io_position`` avoids the substring ``index``: PyG shifts such fields by the node count when
batching. The float fields ``act_args``, ``conv_args`` and ``pool_args`` have the dtype of ``x``;
``from_graph`` refuses a graph whose ``act``, ``act_args``, ``conv_args``, ``pool`` or ``pool_args``
differ from the model's.)

Hidden neurons carry nothing that depends on their position inside their layer, so relabelling
hidden neurons of the model relabels the nodes of the graph and nothing else: ``act``, ``act_args``,
``conv_args``, ``pool`` and ``pool_args`` describe the operation a whole activation space went
through and are equal on every neuron of it.

Two different element-wise functions, poolings or convolution geometries never give one graph: the
kind and every parameter that changes the function are recorded (where two spellings are the same
function, such as ``ReLU6`` and ``Hardtanh(0, 6)``, they get one record). Parameters of the
activations (``act_args[:, 0]``, ``act_args[:, 1]``):

=====================  ======================  ======================
:class:`Activation`    column 0                column 1
=====================  ======================  ======================
``LEAKY_RELU``         ``negative_slope``      0
``ELU``, ``CELU``      ``alpha``               0
``SOFTPLUS``           ``beta``                ``threshold``
``SINE``               ``w0``                  0
``HARDTANH``           ``min_val``             ``max_val``
``SOFTSHRINK``         ``lambd``               0
``HARDSHRINK``         ``lambd``               0
``THRESHOLD``          ``threshold``           ``value``
``SWISH``              ``beta``                0
any other              0                       0
=====================  ======================  ======================

``GELU(approximate="tanh")`` is its own kind (``GELU_TANH``), as is ``RELU6``; ``Hardtanh(0, 6)``
is recorded as ``RELU6``. An element-wise module or function nngraph has no kind for goes to the fallback
(:mod:`nngraph.convert.fallback`).

What the fallback makes, for an operation no converter represents exactly:

- :attr:`NodeKind.ELEMENTWISE` nodes, one per neuron of its input and tied to it (the same permutation moves
  both), with an identity :attr:`EdgeType.OPAQUE` edge from the input neuron, where a float64 test showed the
  operation acts on every neuron alone (``erf``, ``pow``, an unnamed activation);
- otherwise :attr:`NodeKind.OPAQUE` nodes along one axis of its output, fixed, with identity OPAQUE edges from
  the neurons of its inputs (all pairs when there are at most ``FULL_WIRING``, else a band), which are fixed
  too;
- :attr:`NodeKind.PARAMETER` nodes, fixed, for a parameter such an operation reads (or one nothing reads): a
  parameter of one entry per row holds it in ``bias``; longer rows are cut into pieces, each the kernel
  ``(1, 1, width)`` of an OPAQUE edge from its node to the operation's output;
- on ELEMENTWISE and OPAQUE nodes, ``op_code[:, 0]`` the operation's category (a hash of its name) and
  ``op_code[:, 1]`` a fingerprint of its constant arguments and input shapes;
- ``F.linear`` / ``F.conv*d`` whose weight is computed from parameters (weight norm, a standardised kernel) by a
  derivation a float64 test showed to commute with relabelling the layer's neurons
  (:mod:`nngraph.convert.derived`): :attr:`NodeKind.LINEAR` / :attr:`NodeKind.CONV` neurons as for the module, the
  parameter of the weight's shape on the WEIGHT edges, parameters of one entry per output neuron (weight norm's
  ``g``) in ``norm_weight``, ``norm_bias``, ``running_mean``, ``running_var`` of the output neurons in that order,
  and ``op_code`` of the output neurons the derivation (category and fingerprint as above).
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
    """What produced the neuron; invariant under permutations of hidden neurons.

    ``NodeKind``, :class:`EdgeType` and :class:`Activation` only gain values at the end: the encoder's
    embedding tables are indexed by them, and checkpoints saved with fewer values load into today's
    tables (:func:`nngraph.gnn.compat.load_appended_rows`)."""

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
    POOL = 13  # output of a pooling applied to a value that is also used unpooled elsewhere
    CAUSAL_HEAD = 14  # one attention head of causal attention (is_causal=True)
    ATTENDED = 15  # a value neuron after attention mixed it over positions (scaled_dot_product_attention)
    SCALE = 16  # a neuron multiplied by a parameter of its own (layer scale): one WEIGHT edge from its input
    CONCAT = 17  # a neuron of a concatenation along positions (class token + patches): CONCAT / WEIGHT edges in
    PRODUCT = 18  # the product of two activations (gating: squeeze-excitation, GLU, SwiGLU): FACTOR edges in
    CONSTANT_SCALE = 19  # a neuron multiplied by a number: one SCALE edge in, carrying the number
    MODULATED = 20  # a neuron multiplied by a constant tensor computed in forward (rotary cos / sin): fixed
    RMS_NORM = 21  # output of an RMS normalization (x / rms(x) * weight), as NORM for LayerNorm
    # recurrent layers (nn.RNN / nn.LSTM / nn.GRU, see nngraph.convert.recurrent); the rows of weight_ih and
    # weight_hh are LINEAR neurons, summed (RESIDUAL edges) into the gate that reads them
    RECURRENT_HIDDEN = 22  # hidden unit h of a recurrent layer: its output, fed back through RECURRENT edges
    LSTM_CELL = 23  # LSTM cell state c = f * c_prev + i * g (GATE edges from i, f, g)
    GATE_INPUT = 24  # LSTM input gate i = sigmoid(.)
    GATE_FORGET = 25  # LSTM forget gate f = sigmoid(.)
    CANDIDATE = 26  # candidate state: LSTM g = tanh(ih + hh), GRU n = tanh(ih + r * hh) (a GATE edge from r)
    GATE_OUTPUT = 27  # LSTM output gate o = sigmoid(.): h = o * tanh(c) (GATE edges from o and c)
    GATE_RESET = 28  # GRU reset gate r = sigmoid(.)
    GATE_UPDATE = 29  # GRU update gate z = sigmoid(.): h = (1 - z) * n + z * h_prev (GATE edges from z and n)
    SOFTMAX = 30  # softmax over the neurons of an activation (a function of the whole axis): NORM edge in
    LOG_SOFTMAX = 31  # log_softmax over the neurons of an activation (a classifier's output): NORM edge in
    L2_NORMALIZED = 32  # x / max(||x||_2, 1e-12) over the neurons of an activation (F.normalize): NORM edge in
    # attention masks (nngraph.convert.attention): a mask that is a model input makes the heads of the attention
    # that reads it these kinds; a constant mask is recorded when causal (CAUSAL_HEAD) and refused otherwise
    MASKED_HEAD = 33  # one attention head whose scores are masked by a model input (a padding mask)
    CAUSAL_MASKED_HEAD = 34  # one head of causal attention also masked by a model input
    # fallbacks (nngraph.convert.fallback): operations no converter names; ``op_code`` says which operation
    OPAQUE = 35  # a neuron of the output of an operation nngraph cannot see through: fixed, as are its inputs
    PARAMETER = 36  # a row of a parameter read by such an operation, or by none: fixed, its entries its features
    ELEMENTWISE = 37  # a neuron after an unnamed operation a float64 test showed to act on each neuron alone


NUM_NODE_KINDS = max(NodeKind) + 1


class EdgeType(IntEnum):
    """How two neurons are related."""

    WEIGHT = 0  # a learned weight or kernel (Linear, Conv, Embedding, attention projections)
    RESIDUAL = 1  # operand -> sum of a residual addition (identity)
    NORM = 2  # input -> output of a per-neuron normalization (identity)
    ACTIVATION = 3  # input -> output of an activation (identity)
    QK_PAIR = 4  # query dim j -> key dim j of the same head (their product is summed)
    HEAD_MEMBER = 5  # head -> its query / key / value neurons
    GROUP_MEMBER = 6  # GroupNorm group -> its channels
    CONCAT = 7  # operand neuron -> the same neuron of a concatenation along positions (identity)
    POOL = 8  # input -> output of a pooling whose input is also used unpooled elsewhere (identity)
    ATTEND = 9  # value neuron -> its ATTENDED neuron (identity; the mixing over positions is implied)
    FACTOR = 10  # operand -> product of an elementwise product of activations (identity)
    SCALE = 11  # neuron -> the neuron times a constant (the constant is the edge's feature)
    MODULATE = 12  # neuron -> the neuron times a constant tensor of the forward (identity; see MODULATED)
    RECURRENT = 13  # a weight of weight_hh: hidden unit (its value at the previous step) -> a LINEAR row neuron
    GATE = 14  # gate or state -> the state it multiplies into (identity; the roles are the node kinds)
    OPAQUE = 15  # input neuron -> OPAQUE / ELEMENTWISE output, or a PARAMETER row -> what reads it (1, or the row)


NUM_EDGE_TYPES = max(EdgeType) + 1


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
    OTHER = 10  # no longer produced (every activation has its own kind); kept so numbers stay stable
    RELU6 = 11
    HARDTANH = 12
    HARDSWISH = 13
    HARDSIGMOID = 14
    MISH = 15
    GELU_TANH = 16  # GELU(approximate="tanh")
    SELU = 17
    CELU = 18
    LOG_SIGMOID = 19
    SOFTSHRINK = 20
    HARDSHRINK = 21
    THRESHOLD = 22
    SWISH = 23  # x * sigmoid(beta * x) (act_args: beta); CLIP's QuickGELU is beta = 1.702


NUM_ACTIVATIONS = max(Activation) + 1

#: Names of the columns of ``data.act_args`` (their meaning per kind is in the module docstring).
ACT_ARGS = ("arg0", "arg1")
ACT_ARGS_DIM = len(ACT_ARGS)

#: Columns of ``data.conv_args``: per spatial axis ``(d, h, w)`` (a 2d convolution's depth axis and a
#: 1d convolution's depth and height axes hold the identity: stride 1, padding 0, dilation 1), the
#: padding before and after the positions of that axis (``padding="same"`` resolved to numbers),
#: ``output_padding`` of a transposed convolution, the :data:`PADDING_MODES` index, and 1 for a
#: transposed convolution.
CONV_ARGS = (
    "stride_d", "stride_h", "stride_w",
    "pad_before_d", "pad_before_h", "pad_before_w",
    "pad_after_d", "pad_after_h", "pad_after_w",
    "dilation_d", "dilation_h", "dilation_w",
    "output_padding_d", "output_padding_h", "output_padding_w",
    "padding_mode", "transposed",
)
CONV_ARGS_DIM = len(CONV_ARGS)
#: ``conv_args[:, CONV_ARGS.index("padding_mode")]`` is the index of the module's ``padding_mode`` here.
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class Pool(IntEnum):
    """Poolings and spatial reductions applied to a neuron's value (columns in :data:`POOL_ARGS`).

    Windowed poolings (``MAX``: kernel, stride, padding, dilation, ``ceil_mode``; ``AVG``: kernel,
    stride, padding, ``ceil_mode``, ``count_include_pad``, ``divisor_override`` (0 = none); ``LP``:
    ``norm_type``, kernel, stride, ``ceil_mode``) put their sizes per spatial axis ``(d, h, w)``,
    right-aligned, the missing axes holding the identity (kernel 1, stride 1, padding 0, dilation 1).
    Adaptive poolings put their output size in the kernel columns (0 for ``None``: that size is kept).
    Reductions (``MEAN``, ``SUM``, ``AMAX``, ``AMIN`` over some dimensions) put 1 in the kernel
    columns of the reduced dimensions after the neuron axis (right-aligned: the last dimension is
    ``w``) and 1 in the stride columns of the reduced dimensions before it (right-aligned: the
    dimension just before the neuron axis is ``w``). Positions picked out of a value
    (:mod:`nngraph.convert.positions`), one record per picked dimension: ``SELECT`` (``x[:, 0]``,
    ``x[:, -1]``, ``select``, ``unbind``) puts the dimension counted from the end of the tensor it
    indexes (``-2`` for ``x[:, 0]`` of a ``(B, T, C)``) in ``kernel_d``, the index at the traced size
    (``0 .. size - 1``) in ``kernel_h``, the size in ``kernel_w`` and 1 in ``stride_d`` if the index was
    written counted from the end; ``SLICE`` (``x[:, 1:]``, ``x[:, ::2]``, ``x.flip`` is not one) puts the
    dimension in ``kernel_d``, the first index and the number of entries kept in ``kernel_h`` and
    ``kernel_w``, the step in ``stride_d``, the size in ``stride_h``, and 1 in ``stride_w`` /
    ``padding_d`` if the start / stop was written counted from the end. Positions reordered, one record per
dimension: ``FLIP`` (``x.flip(d)``) puts the dimension counted from the end in ``kernel_d`` and the size in
``kernel_w``; ``ROLL`` (``torch.roll(x, s, d)``) the dimension in ``kernel_d``, the shift modulo the size
(``0 .. size - 1``) in ``kernel_h`` and the size in ``kernel_w``; ``REORDER`` (a transpose, permute or movedim
that changes the order of the position axes after the first, which is the batch by convention) the new order
of those axes as decimal digits (``21`` for a swap of two) in ``kernel_d`` and their sizes in the columns after it. ``SCORE_OFFSET`` is recorded on attention head nodes: a constant
added to the scores beside a learned score bias, described by
:func:`nngraph.convert.attention.score_offset_record` (pattern length, sizes, share of non-zero entries,
smallest and largest entry, a 24-bit fingerprint). Every kind sets ``after_act``
    to 1 if the neuron's activation was applied before the pooling (``relu`` then pool), 0 otherwise.
    """

    NONE = 0
    MAX = 1
    AVG = 2
    LP = 3
    ADAPTIVE_MAX = 4
    ADAPTIVE_AVG = 5
    MEAN = 6
    SUM = 7
    AMAX = 8
    AMIN = 9
    SELECT = 10  # one position of a dimension picked (a class token read, the last step)
    SLICE = 11  # a start:stop:step range of a dimension picked
    FLIP = 12  # the positions of a dimension reversed (x.flip(1))
    ROLL = 13  # the positions of a dimension rotated (torch.roll(x, s, 1), Swin's shifted windows)
    SCORE_OFFSET = 14  # on attention heads: a constant added to their scores (Swin's shifted-window mask)
    REORDER = 15  # position axes put in another order (x.transpose(2, 3) of a feature map)


NUM_POOLS = max(Pool) + 1
#: Rows of the category table of ``data.op_code[:, 0]`` (a hash of the operation's name, ``0`` = none).
OP_CATEGORIES = 1024
OP_CODE_DIM = 2
#: Slots of ``data.pool``: poolings / reductions in a row on the same neurons; more are refused.
MAX_POOLS = 3
#: Columns of every slot of ``data.pool_args``.
POOL_ARGS = (
    "kernel_d", "kernel_h", "kernel_w",
    "stride_d", "stride_h", "stride_w",
    "padding_d", "padding_h", "padding_w",
    "dilation_d", "dilation_h", "dilation_w",
    "ceil_mode", "count_include_pad", "divisor_override", "norm_type", "after_act",
)
POOL_ARGS_DIM = len(POOL_ARGS)
