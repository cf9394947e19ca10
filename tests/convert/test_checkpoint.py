"""Converting from a checkpoint: parameters built on the meta device, filled with memory-mapped tensors of a
safetensors file, give the same graph as the loaded model (the reference), tied weights included."""
import re

import pytest
import torch
from safetensors.torch import save_file, save_model
from torch import nn

import nngraph
from nngraph.convert.checkpoint import load_mapped, parameters_on_meta


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def test_an_mlp_from_its_checkpoint_gives_the_same_graph(tmp_path):
    model = _mlp().eval()
    model[1].running_mean.normal_()
    save_file(model.state_dict(), tmp_path / "m.safetensors")
    with parameters_on_meta():
        skeleton = _mlp()
    assert all(p.device.type == "meta" for p in skeleton.parameters())
    assert all(b.device.type == "cpu" for b in skeleton.buffers())  # buffers are made as usual
    loaded = load_mapped(skeleton, tmp_path / "m.safetensors")
    x = (torch.randn(5, 4),)
    a, b = nngraph.to_graph(model, x), nngraph.to_graph(loaded, x)
    assert torch.equal(a.x, b.x) and torch.equal(a.edge_attr, b.edge_attr) and torch.equal(a.edge_index, b.edge_index)
    assert torch.equal(loaded(*x), model(*x))


def _llama(**kwargs):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                   use_cache=False, **kwargs)
    return transformers.LlamaForCausalLM(cfg)


@pytest.mark.parametrize("tied", [False, True])
def test_a_hugging_face_llm_from_its_checkpoint(tmp_path, tied):
    torch.manual_seed(0)
    model = _llama(tie_word_embeddings=tied).eval()
    save_model(model, str(tmp_path / "m.safetensors"))  # a tied weight is saved once
    with parameters_on_meta():
        skeleton = _llama(tie_word_embeddings=tied)
    loaded = load_mapped(skeleton, tmp_path / "m.safetensors")
    if tied:
        assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    ids = (torch.randint(0, 40, (2, 6)),)
    a, b = nngraph.to_graph(model, ids), nngraph.to_graph(loaded, ids)
    assert torch.equal(a.x, b.x) and torch.equal(a.edge_attr, b.edge_attr)
    assert nngraph.verify(loaded, ids, num_permutations=2).ok


def test_missing_and_unexpected_tensors_are_one_line_errors(tmp_path):
    state = _mlp().state_dict()
    save_file({k: v for k, v in state.items() if k != "3.weight"}, tmp_path / "missing.safetensors")
    save_file({**state, "extra": torch.zeros(2)}, tmp_path / "extra.safetensors")
    save_file({**state, "3.weight": torch.zeros(2, 2)}, tmp_path / "shape.safetensors")
    for name, words in [("missing", "lacks 1 tensors of the model: 3.weight"),
                        ("extra", "no place for: extra"), ("shape", "3.weight: shape (2, 2)")]:
        with parameters_on_meta():
            skeleton = _mlp()
        with pytest.raises(ValueError, match=re.escape(words)) as error:
            load_mapped(skeleton, tmp_path / f"{name}.safetensors")
        assert "\n" not in str(error.value)


def test_the_tensors_are_views_of_the_file_not_copies(tmp_path):
    """Writing into the mapped file's bytes is not possible through them (read-only map), and the model's
    parameters hold no storage of their own: their data pointers lie inside the one mapping."""
    model = _mlp()
    save_file(model.state_dict(), tmp_path / "m.safetensors")
    with parameters_on_meta():
        skeleton = _mlp()
    loaded = load_mapped(skeleton, tmp_path / "m.safetensors")
    size = (tmp_path / "m.safetensors").stat().st_size
    pointers = [p.data_ptr() for p in loaded.parameters()]
    assert max(pointers) - min(pointers) < size  # all within one region of the file's size
    assert not any(p.requires_grad for p in loaded.parameters())
