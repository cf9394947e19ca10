"""Tiny, randomly initialised Hugging Face models built from configs (nothing is downloaded).

Each entry builds ``(model, example_inputs)``; the sizes are the smallest the configs accept, so
that conversion and the float64 soundness check take seconds.
"""
from __future__ import annotations

from typing import Callable

import torch

from nngraph.testing import reinitialise as _reinitialise

transformers = __import__("pytest").importorskip("transformers")


def _ids(vocab: int = 50, batch: int = 2, length: int = 6) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(0))


def _pixels(channels: int = 3, size: int = 32, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0))


def bert():
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16, type_vocab_size=2)
    return transformers.BertModel(cfg, add_pooling_layer=True), (_ids(),)


def distilbert():
    cfg = transformers.DistilBertConfig(vocab_size=50, dim=16, n_layers=2, n_heads=2, hidden_dim=32,
                                        max_position_embeddings=16)
    return transformers.DistilBertModel(cfg), (_ids(),)


def gpt2():
    cfg = transformers.GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=16, use_cache=False)
    return transformers.GPT2LMHeadModel(cfg), (_ids(),)


def vit():
    cfg = transformers.ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=32, num_labels=3)
    return transformers.ViTForImageClassification(cfg), (_pixels(size=16),)


def llama():
    cfg = transformers.LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
                                   use_cache=False)
    return transformers.LlamaForCausalLM(cfg), (_ids(),)


class _EncoderDecoder(torch.nn.Module):
    """``T5Model`` called with keyword inputs (its second positional argument is the attention mask)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, decoder_input_ids):
        return self.model(input_ids=input_ids, decoder_input_ids=decoder_input_ids).last_hidden_state


def t5():
    cfg = transformers.T5Config(vocab_size=50, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
                                use_cache=False)
    return _EncoderDecoder(transformers.T5Model(cfg)), (_ids(), _ids(length=4))


def clip_vision():
    cfg = transformers.CLIPVisionConfig(image_size=16, patch_size=4, hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=2, num_attention_heads=2)
    return transformers.CLIPVisionModel(cfg), (_pixels(size=16),)


def resnet():
    cfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    return transformers.ResNetModel(cfg), (_pixels(),)


def mobilenet_v2():
    # the default tf_padding=True pads activations with F.pad before strided convs: folded into the convs
    cfg = transformers.MobileNetV2Config(image_size=32, depth_multiplier=0.25)
    return transformers.MobileNetV2Model(cfg), (_pixels(),)


def efficientnet():
    cfg = transformers.EfficientNetConfig(image_size=32, width_coefficient=0.1, depth_coefficient=0.1,
                                          hidden_dim=128)
    return transformers.EfficientNetModel(cfg), (_pixels(),)


def convnext():
    cfg = transformers.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
    return transformers.ConvNextModel(cfg), (_pixels(),)


def swin():
    cfg = transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[2, 2],
                                  window_size=4)
    return transformers.SwinModel(cfg), (_pixels(),)


def swin_shifted():
    """Two blocks per stage: the second one shifts its windows (``torch.roll``) and masks the attention
    between tokens that the shift brought together with a constant ``-100`` mask."""
    cfg = transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[2, 2], num_heads=[2, 2],
                                  window_size=4)
    return transformers.SwinModel(cfg), (_pixels(),)


def eager(build: Callable) -> Callable:
    """``build`` with ``attn_implementation="eager"``: attention written out as matmul / softmax / matmul."""

    def build_eager():
        model, inputs = build()
        for module in model.modules():
            config = getattr(module, "config", None)
            if config is not None and hasattr(config, "_attn_implementation"):
                config._attn_implementation = "eager"
                for sub in (getattr(config, k, None) for k in ("text_config", "vision_config")):
                    if sub is not None and hasattr(sub, "_attn_implementation"):
                        sub._attn_implementation = "eager"
        return model, inputs

    build_eager.__name__ = f"{build.__name__}_eager"
    return build_eager


def reinitialise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """:func:`nngraph.testing.reinitialise` with every floating buffer drawn too (what these tests were built on)."""
    return _reinitialise(model, seed, all_buffers=True)


def build(name: str):
    """``(model in eval mode, re-initialised, example inputs)`` of ``MODELS[name]``, seeded."""
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    return reinitialise(model.eval()), inputs


MODELS: dict[str, Callable] = {
    "BertModel": bert,
    "DistilBertModel": distilbert,
    "GPT2LMHeadModel": gpt2,
    "ViTForImageClassification": vit,
    "LlamaForCausalLM": llama,
    "T5Model": t5,
    "CLIPVisionModel": clip_vision,
    "ResNetModel": resnet,
    "MobileNetV2Model": mobilenet_v2,
    "EfficientNetModel": efficientnet,
    "ConvNextModel": convnext,
    "SwinModel": swin,
    "SwinModel[shifted]": swin_shifted,
    # the same transformers with attention written out by hand (attn_implementation="eager")
    "BertModel[eager]": eager(bert),
    "GPT2LMHeadModel[eager]": eager(gpt2),
    "ViTForImageClassification[eager]": eager(vit),
    "LlamaForCausalLM[eager]": eager(llama),
    "T5Model[eager]": eager(t5),
    "CLIPVisionModel[eager]": eager(clip_vision),
}
