"""Convert a Hugging Face model to a neural graph, check that the graph is sound, and read it back.

    python examples/convert_hf_model.py [--threads N]   # with nngraph installed (pip install -e .), or PYTHONPATH=.

The model is a two-layer BERT built from a tiny config (random weights, nothing is downloaded; needs
``transformers``). ``nngraph.verify`` relabels hidden neurons by symmetries the graph claims and checks in
float64 that the model computes the same function; ``from_graph`` inverts ``to_graph`` bit for bit.

One thread by default: on a machine whose other cores are busy, more threads stall at OpenMP's barriers.
"""
from __future__ import annotations

import argparse

import torch
import transformers

import nngraph
from nngraph.schema import NodeKind
from nngraph.threads import set_threads

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--threads", type=int, default=None,
                    help="threads for torch and OpenMP (default: $NNGRAPH_THREADS, else 1: nngraph.threads)")
args = parser.parse_args()
set_threads(args.threads)  # nngraph.threads.pick_threads: one unless told, see the docstring

torch.manual_seed(0)
config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=16)
model = transformers.BertModel(config).eval()
ids = torch.randint(0, 50, (2, 6))  # (batch, tokens)

graph = nngraph.to_graph(model, (ids,))
kinds = torch.bincount(graph.node_kind, minlength=len(NodeKind))
print(f"{type(model).__name__}: {graph.num_nodes} neurons, {graph.num_edges} edges, "
      f"{graph.edge_attr.shape[0]} kernel entries, {sum(p.numel() for p in model.parameters())} parameters")
print("neurons by kind:", ", ".join(f"{NodeKind(k).name.lower()} {int(c)}" for k, c in enumerate(kinds) if c))

report = nngraph.verify(model, (ids,))
print(report)
assert report.ok, "the graph claims a symmetry the model does not have"

# the exact inverse: an edited graph loads into a copy of the model
edited = graph.clone()
edited.edge_attr = graph.edge_attr * 1.01
copy = nngraph.from_graph(edited, model)
restored = nngraph.from_graph(graph, model)
assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), restored.state_dict().values()))
with torch.no_grad():
    change = (copy(ids).last_hidden_state - model(ids).last_hidden_state).abs().max()
print(f"round trip bit for bit; weights scaled by 1.01 move the output by {float(change):.4f}")
