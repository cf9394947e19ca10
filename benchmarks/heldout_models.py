"""A held-out coverage set: real architectures that no test of the project names.

``HELDOUT[name]()`` builds ``(model.eval(), example_inputs)`` at the smallest sizes the configs
accept (hidden 16-32, 1-2 layers, vocabulary 64, images 32x32, audio 1600 samples), with random
weights re-initialised by :func:`reinitialise`; ``CATEGORY[name]`` is one of ``llm``, ``encoder``,
``vision``, ``speech`` and ``plain``. Nothing is downloaded: every Hugging Face model is built from
a tiny config, and an architecture the installed ``transformers`` lacks is left out of the set.

The set is meant to measure coverage, so do not tune ``nngraph`` against it: it is a held-out set
only as long as no test names these models. ``python -m benchmarks coverage`` runs it.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nngraph.testing import reinitialise

try:
    import transformers
except ImportError:  # the plain PyTorch models still build
    transformers = None

VOCAB = 64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ids(vocab: int = VOCAB, batch: int = 2, length: int = 6, low: int = 3) -> torch.Tensor:
    """Token ids above the special ids 0-2 (so that no padding token appears)."""
    return torch.randint(low, vocab, (batch, length), generator=_gen())


def _pixels(channels: int = 3, size: int = 32, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=_gen())


def _audio(samples: int = 1600, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, samples, generator=_gen())


def _ready(model: nn.Module, inputs: tuple, seed: int = 0) -> tuple[nn.Module, tuple]:
    return reinitialise(model, seed).eval(), inputs


# --------------------------------------------------------------------------- LLMs (causal LMs)

_SPECIAL = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
_LLAMA_LIKE = dict(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32, use_cache=False,
                   tie_word_embeddings=False, **_SPECIAL)


def _causal(config_name: str, model_name: str, kwargs: dict) -> Callable[[], tuple[nn.Module, tuple]]:
    def build():
        cfg = getattr(transformers, config_name)(**kwargs)
        return _ready(getattr(transformers, model_name)(cfg), (_ids(),))

    build.__name__ = model_name
    return build


def _llms() -> dict[str, Callable]:
    L = _LLAMA_LIKE
    specs = {
        "Gemma": ("GemmaConfig", "GemmaForCausalLM", dict(L, head_dim=8)),
        "Gemma2": ("Gemma2Config", "Gemma2ForCausalLM", dict(L, head_dim=8, sliding_window=4,
                                                             query_pre_attn_scalar=8)),
        "Qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(L)),
        "Qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(L, head_dim=8)),
        "Mistral": ("MistralConfig", "MistralForCausalLM", dict(L, sliding_window=4)),
        "Phi": ("PhiConfig", "PhiForCausalLM", dict(L, partial_rotary_factor=0.5)),
        "Phi3": ("Phi3Config", "Phi3ForCausalLM", dict(L)),
        "GPTNeoX": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
                    dict(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, rotary_pct=0.5, max_position_embeddings=32, use_cache=False,
                         **_SPECIAL)),
        "Bloom": ("BloomConfig", "BloomForCausalLM",
                  dict(vocab_size=VOCAB, hidden_size=16, n_layer=2, n_head=2, use_cache=False, **_SPECIAL)),
        "OPT": ("OPTConfig", "OPTForCausalLM",
                dict(vocab_size=VOCAB, hidden_size=16, ffn_dim=32, num_hidden_layers=2, num_attention_heads=2,
                     word_embed_proj_dim=16, max_position_embeddings=32, use_cache=False, **_SPECIAL)),
        "Falcon": ("FalconConfig", "FalconForCausalLM",
                   dict(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        max_position_embeddings=32, use_cache=False, **_SPECIAL)),
        "GPTJ": ("GPTJConfig", "GPTJForCausalLM",
                 dict(vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=2, rotary_dim=4, n_positions=32,
                      use_cache=False, **_SPECIAL)),
        "StableLm": ("StableLmConfig", "StableLmForCausalLM", dict(L, partial_rotary_factor=0.5)),
        "Olmo": ("OlmoConfig", "OlmoForCausalLM", dict(L)),
        "Mixtral": ("MixtralConfig", "MixtralForCausalLM", dict(L, num_local_experts=4, num_experts_per_tok=2)),
        "Qwen2Moe": ("Qwen2MoeConfig", "Qwen2MoeForCausalLM",
                     dict(L, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
                          shared_expert_intermediate_size=16, decoder_sparse_step=1)),
        "Mamba": ("MambaConfig", "MambaForCausalLM",
                  dict(vocab_size=VOCAB, hidden_size=16, state_size=4, num_hidden_layers=2, expand=2, conv_kernel=4,
                       time_step_rank=4, use_cache=False, **_SPECIAL)),
        "GPTNeo": ("GPTNeoConfig", "GPTNeoForCausalLM",
                   dict(vocab_size=VOCAB, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                        attention_types=[[["global", "local"], 1]], window_size=4, max_position_embeddings=32,
                        use_cache=False, **_SPECIAL)),
        "CodeGen": ("CodeGenConfig", "CodeGenForCausalLM",
                    dict(vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=4, rotary_dim=2, n_positions=32, n_ctx=32,
                         use_cache=False, **_SPECIAL)),
        "Cohere": ("CohereConfig", "CohereForCausalLM", dict(L)),
        "Starcoder2": ("Starcoder2Config", "Starcoder2ForCausalLM", dict(L, sliding_window=None)),
    }
    return {spec[1]: _causal(*spec) for spec in specs.values()
            if transformers is not None and hasattr(transformers, spec[0]) and hasattr(transformers, spec[1])}


# --------------------------------------------------------------------------- text encoders

_BERT_LIKE = dict(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                  max_position_embeddings=32, type_vocab_size=2, **_SPECIAL)


def roberta():
    cfg = transformers.RobertaConfig(**dict(_BERT_LIKE, pad_token_id=1))
    return _ready(transformers.RobertaModel(cfg), (_ids(),))


def xlm_roberta():
    cfg = transformers.XLMRobertaConfig(**dict(_BERT_LIKE, pad_token_id=1))
    return _ready(transformers.XLMRobertaModel(cfg), (_ids(),))


def deberta_v2():
    cfg = transformers.DebertaV2Config(**dict(_BERT_LIKE, type_vocab_size=0), relative_attention=True,
                                       pos_att_type=["p2c", "c2p"], max_relative_positions=-1, position_buckets=4,
                                       share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False)
    return _ready(transformers.DebertaV2Model(cfg), (_ids(),))


def albert():
    cfg = transformers.AlbertConfig(**_BERT_LIKE, embedding_size=8, num_hidden_groups=1)
    return _ready(transformers.AlbertModel(cfg), (_ids(),))


def electra():
    cfg = transformers.ElectraConfig(**_BERT_LIKE, embedding_size=8)
    return _ready(transformers.ElectraModel(cfg), (_ids(),))


def mpnet():
    cfg = transformers.MPNetConfig(**{k: v for k, v in _BERT_LIKE.items() if k != "type_vocab_size"},
                                   relative_attention_num_buckets=32)  # compute_position_bias assumes 32
    return _ready(transformers.MPNetModel(cfg), (_ids(),))


def funnel():
    cfg = transformers.FunnelConfig(vocab_size=VOCAB, block_sizes=[1, 1], block_repeats=[1, 1], num_decoder_layers=1,
                                    d_model=16, n_head=2, d_head=8, d_inner=32, max_position_embeddings=32,
                                    **_SPECIAL)
    return _ready(transformers.FunnelModel(cfg), (_ids(),))


# --------------------------------------------------------------------------- vision

_VIT_LIKE = dict(image_size=32, patch_size=8, num_channels=3, hidden_size=16, num_hidden_layers=2,
                 num_attention_heads=2, intermediate_size=32)


def beit():
    cfg = transformers.BeitConfig(**_VIT_LIKE, use_relative_position_bias=True, use_mean_pooling=True,
                                  layer_scale_init_value=0.1)
    return _ready(transformers.BeitModel(cfg), (_pixels(),))


def data2vec_vision():
    cfg = transformers.Data2VecVisionConfig(**_VIT_LIKE, use_shared_relative_position_bias=True,
                                            use_mean_pooling=True)
    return _ready(transformers.Data2VecVisionModel(cfg), (_pixels(),))


def dinov2():
    cfg = transformers.Dinov2Config(**_VIT_LIKE, mlp_ratio=2, layerscale_value=0.5)
    return _ready(transformers.Dinov2Model(cfg), (_pixels(),))


def deit():
    cfg = transformers.DeiTConfig(**_VIT_LIKE)
    return _ready(transformers.DeiTModel(cfg), (_pixels(),))


class _MAE(nn.Module):
    """``ViTMAEModel`` with its masking noise as an input (otherwise it draws ``torch.rand`` in forward)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, noise):
        return self.model(pixel_values=pixel_values, noise=noise).last_hidden_state


def vit_mae():
    cfg = transformers.ViTMAEConfig(**_VIT_LIKE, mask_ratio=0.5)
    noise = torch.rand(2, (32 // 8) ** 2, generator=_gen(1))
    return _ready(_MAE(transformers.ViTMAEModel(cfg)), (_pixels(), noise))


def convnext_v2():
    cfg = transformers.ConvNextV2Config(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
    return _ready(transformers.ConvNextV2Model(cfg), (_pixels(),))


def swinv2():
    cfg = transformers.Swinv2Config(image_size=32, patch_size=4, embed_dim=8, depths=[2, 2], num_heads=[2, 2],
                                    window_size=4)
    return _ready(transformers.Swinv2Model(cfg), (_pixels(),))


def mobilevit():
    cfg = transformers.MobileViTConfig(image_size=32, patch_size=2, hidden_sizes=[16, 16, 16],
                                       neck_hidden_sizes=[8, 8, 8, 16, 16, 16, 32], num_attention_heads=2,
                                       expand_ratio=2.0)
    return _ready(transformers.MobileViTModel(cfg), (_pixels(),))


def levit():
    cfg = transformers.LevitConfig(image_size=32, patch_size=16, hidden_sizes=[16, 32], num_attention_heads=[2, 2],
                                   depths=[1, 1], key_dim=[8, 8], mlp_ratio=[2, 2], attention_ratio=[2, 2],
                                   down_ops=[["Subsample", 8, 2, 4, 2, 2]])
    return _ready(transformers.LevitModel(cfg), (_pixels(),))


def regnet():
    cfg = transformers.RegNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], groups_width=8,
                                    layer_type="y")
    return _ready(transformers.RegNetModel(cfg), (_pixels(),))


def bit():
    cfg = transformers.BitConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="preactivation",
                                 global_padding="SAME", num_groups=4)
    return _ready(transformers.BitModel(cfg), (_pixels(),))


def poolformer():
    cfg = transformers.PoolFormerConfig(num_encoder_blocks=2, depths=[1, 1], hidden_sizes=[8, 16], patch_sizes=[7, 3],
                                        strides=[4, 2], padding=[2, 1], pool_size=3, mlp_ratio=2.0)
    return _ready(transformers.PoolFormerModel(cfg), (_pixels(),))


def segformer():
    cfg = transformers.SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                                       patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2],
                                       mlp_ratios=[2, 2])
    return _ready(transformers.SegformerModel(cfg), (_pixels(),))


def mobilenet_v1():
    cfg = transformers.MobileNetV1Config(image_size=32, depth_multiplier=0.125, min_depth=8)
    return _ready(transformers.MobileNetV1Model(cfg), (_pixels(),))


# --------------------------------------------------------------------------- speech

_WAV2VEC_LIKE = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     conv_dim=(16, 16, 16, 16, 16, 16, 16), num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2,
                     vocab_size=VOCAB, do_stable_layer_norm=False)


def wav2vec2():
    cfg = transformers.Wav2Vec2Config(**_WAV2VEC_LIKE)
    return _ready(transformers.Wav2Vec2Model(cfg), (_audio(),))


def hubert():
    cfg = transformers.HubertConfig(**dict(_WAV2VEC_LIKE, do_stable_layer_norm=True, feat_extract_norm="layer"))
    return _ready(transformers.HubertModel(cfg), (_audio(),))


def wavlm():
    cfg = transformers.WavLMConfig(**_WAV2VEC_LIKE, num_buckets=8, max_bucket_distance=16)
    return _ready(transformers.WavLMModel(cfg), (_audio(),))


def whisper_encoder():
    """The encoder of ``WhisperModel``: its forward takes ``input_features (batch, mel bins, 2 * positions)``."""
    cfg = transformers.WhisperConfig(vocab_size=VOCAB, num_mel_bins=16, d_model=16, encoder_layers=2,
                                     encoder_attention_heads=2, encoder_ffn_dim=32, decoder_layers=1,
                                     decoder_attention_heads=2, decoder_ffn_dim=32, max_source_positions=16,
                                     max_target_positions=16, use_cache=False, **_SPECIAL,
                                     decoder_start_token_id=1)
    encoder = transformers.WhisperModel(cfg).get_encoder()
    return _ready(encoder, (torch.randn(2, 16, 32, generator=_gen()),))


# --------------------------------------------------------------------------- plain PyTorch

class EncoderDecoderTransformer(nn.Module):
    def __init__(self, d: int = 16):
        super().__init__()
        self.transformer = nn.Transformer(d_model=d, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                          dim_feedforward=32, dropout=0.0, batch_first=True)
        self.head = nn.Linear(d, 4)

    def forward(self, src, tgt):
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
        return self.head(self.transformer(src, tgt, tgt_mask=mask))


class MixerBlock(nn.Module):
    def __init__(self, tokens: int, channels: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.token_mlp = nn.Sequential(nn.Linear(tokens, 2 * tokens), nn.GELU(), nn.Linear(2 * tokens, tokens))
        self.channel_mlp = nn.Sequential(nn.Linear(channels, 2 * channels), nn.GELU(),
                                         nn.Linear(2 * channels, channels))

    def forward(self, x):  # (batch, tokens, channels)
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class MLPMixer(nn.Module):
    def __init__(self, channels: int = 16, patch: int = 8, size: int = 32, classes: int = 5):
        super().__init__()
        tokens = (size // patch) ** 2
        self.stem = nn.Conv2d(3, channels, patch, stride=patch)
        self.blocks = nn.Sequential(MixerBlock(tokens, channels), MixerBlock(tokens, channels))
        self.norm = nn.LayerNorm(channels)
        self.head = nn.Linear(channels, classes)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(x)).mean(1))


def _mlp(sizes, act=nn.ReLU) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    return layers


def weight_norm_mlp():
    torch.manual_seed(0)
    layers = _mlp([8, 16, 16, 4])
    for layer in layers:
        if isinstance(layer, nn.Linear):
            torch.nn.utils.parametrizations.weight_norm(layer)
    return _ready(nn.Sequential(*layers), (torch.randn(2, 8, generator=_gen()),))


def spectral_norm_mlp():
    torch.manual_seed(0)
    layers = _mlp([8, 16, 16, 4])
    for layer in layers:
        if isinstance(layer, nn.Linear):
            torch.nn.utils.parametrizations.spectral_norm(layer)
    model = reinitialise(nn.Sequential(*layers))
    with torch.no_grad():  # a few power iterations in training mode, so that u and v fit the new weights
        model.train()
        for _ in range(5):
            model(torch.zeros(1, 8))
    return model.eval(), (torch.randn(2, 8, generator=_gen()),)


class LoRALinear(nn.Module):
    """``y = x (W + s A B)^T + b``, the low-rank update written on the parameters in forward."""

    def __init__(self, fan_in: int, fan_out: int, rank: int = 2, scale: float = 0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(fan_out, fan_in))
        self.bias = nn.Parameter(torch.zeros(fan_out))
        self.lora_a = nn.Parameter(torch.empty(fan_out, rank))
        self.lora_b = nn.Parameter(torch.empty(rank, fan_in))
        self.scale = scale

    def forward(self, x):
        return F.linear(x, self.weight + self.scale * (self.lora_a @ self.lora_b), self.bias)


class LoRAMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = LoRALinear(8, 16), LoRALinear(16, 16), LoRALinear(16, 4)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class WSConv2d(nn.Conv2d):
    """Weight-standardised convolution (BiT / NFNet style): the kernel is normalised per output channel."""

    def forward(self, x):
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return F.conv2d(x, (w - mean) / torch.sqrt(var + 1e-5), self.bias, self.stride, self.padding)


class WSConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.norm1 = WSConv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8)
        self.conv2, self.norm2 = WSConv2d(8, 16, 3, stride=2, padding=1), nn.GroupNorm(4, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = F.relu(self.norm1(self.conv1(x)))
        x = F.relu(self.norm2(self.conv2(x)))
        return self.head(x.mean(dim=(2, 3)))


class PointwiseOpsMLP(nn.Module):
    """Hidden activations built from ``pow``, ``erf`` and ``torch.special`` functions."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = self.fc1(x)
        h = 0.5 * h.pow(2) + torch.erf(h)
        h = self.fc2(h)
        h = torch.special.ndtr(h) * torch.special.expit(h) + torch.special.log1p(h.abs())
        return self.fc3(h)


class TinyUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.mid = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.up_conv = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec = nn.Sequential(nn.Conv2d(8 + 8 + 16, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))

    def forward(self, x):
        s = self.enc1(x)
        m = self.mid(self.down(s))
        return self.dec(torch.cat([s, self.up_conv(m), F.interpolate(m, scale_factor=2.0, mode="bilinear")], dim=1))


class UnusedParamMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)
        self.unused_layer = nn.Linear(16, 16)  # built, never called (a head left from pre-training)
        self.unused_scale = nn.Parameter(torch.ones(16))

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class LSTMClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.lstm = nn.LSTM(16, 16, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, ids):
        out, (h, _) = self.lstm(self.embed(ids))
        return self.head(h[-1])


class GRUClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.gru = nn.GRU(16, 16, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(32, 3)

    def forward(self, ids):
        out, _ = self.gru(self.embed(ids))
        return self.head(out.mean(1))


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(4, 16, 5, padding=2), nn.BatchNorm1d(16), nn.ReLU(),
            nn.Conv1d(16, 16, 3, padding=2, dilation=2), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(16, 16, 3, padding=1, groups=4), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
            nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


class GatedMLP(nn.Module):
    """SwiGLU: one projection split in two halves, ``a * silu(b)``."""

    def __init__(self):
        super().__init__()
        self.proj_in, self.proj_out = nn.Linear(8, 32), nn.Linear(16, 8)
        self.proj_in2, self.proj_out2 = nn.Linear(8, 32), nn.Linear(16, 4)

    def forward(self, x):
        a, b = self.proj_in(x).chunk(2, dim=-1)
        x = x + self.proj_out(a * F.silu(b))
        return self.proj_out2(F.glu(self.proj_in2(x), dim=-1))


class CumsumMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        h = torch.cumsum(self.fc2(h), dim=-1)  # over features: the order of the hidden neurons matters
        return self.fc3(torch.tanh(h))


class SortMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        h = torch.sort(self.fc2(h), dim=-1).values  # over features
        return self.fc3(h)


class TopKMoE(nn.Module):
    """A token-level mixture of experts: top-2 routing, gates scattered into a dense (tokens, experts)
    matrix, the chosen experts' outputs gathered and mixed."""

    def __init__(self, d: int = 16, hidden: int = 16, experts: int = 4, k: int = 2):
        super().__init__()
        self.k = k
        self.embed = nn.Linear(8, d)
        self.router = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))
                                     for _ in range(experts))
        self.head = nn.Linear(d, 4)

    def forward(self, x):  # (batch, tokens, 8)
        h = self.embed(x)
        logits = self.router(h)
        top_v, top_i = logits.topk(self.k, dim=-1)
        gates = torch.zeros_like(logits).scatter(-1, top_i, torch.softmax(top_v, dim=-1))
        outs = torch.stack([e(h) for e in self.experts], dim=-2)  # (batch, tokens, experts, d)
        index = top_i.unsqueeze(-1).expand(*top_i.shape, outs.shape[-1])
        chosen = torch.gather(outs, -2, index)  # (batch, tokens, k, d)
        weights = torch.gather(gates, -1, top_i).unsqueeze(-1)
        return self.head(h + (weights * chosen).sum(-2))


def _plain(cls, *inputs):
    def build():
        torch.manual_seed(0)
        return _ready(cls(), inputs)

    build.__name__ = cls.__name__
    return build


def _x(*shape, seed: int = 0):
    return torch.randn(*shape, generator=_gen(seed))


# --------------------------------------------------------------------------- the set

def _build() -> tuple[dict[str, Callable], dict[str, str]]:
    held: dict[str, Callable] = {}
    category: dict[str, str] = {}

    def add(cat: str, entries: dict[str, Callable]):
        for name, fn in entries.items():
            held[name] = fn
            category[name] = cat

    if transformers is not None:
        add("llm", _llms())
        hf = {
            "encoder": {"RobertaModel": (roberta, "RobertaConfig"), "XLMRobertaModel": (xlm_roberta, "XLMRobertaConfig"),
                        "DebertaV2Model": (deberta_v2, "DebertaV2Config"), "AlbertModel": (albert, "AlbertConfig"),
                        "ElectraModel": (electra, "ElectraConfig"), "MPNetModel": (mpnet, "MPNetConfig"),
                        "FunnelModel": (funnel, "FunnelConfig")},
            "vision": {"BeitModel": (beit, "BeitConfig"), "Data2VecVisionModel": (data2vec_vision, "Data2VecVisionConfig"),
                       "Dinov2Model": (dinov2, "Dinov2Config"), "DeiTModel": (deit, "DeiTConfig"),
                       "ViTMAEModel[noise]": (vit_mae, "ViTMAEConfig"),
                       "ConvNextV2Model": (convnext_v2, "ConvNextV2Config"), "Swinv2Model": (swinv2, "Swinv2Config"),
                       "MobileViTModel": (mobilevit, "MobileViTConfig"), "LevitModel": (levit, "LevitConfig"),
                       "RegNetModel": (regnet, "RegNetConfig"), "BitModel": (bit, "BitConfig"),
                       "PoolFormerModel": (poolformer, "PoolFormerConfig"),
                       "SegformerModel": (segformer, "SegformerConfig"),
                       "MobileNetV1Model": (mobilenet_v1, "MobileNetV1Config")},
            "speech": {"Wav2Vec2Model": (wav2vec2, "Wav2Vec2Config"), "HubertModel": (hubert, "HubertConfig"),
                       "WavLMModel": (wavlm, "WavLMConfig"), "WhisperEncoder": (whisper_encoder, "WhisperConfig")},
        }
        for cat, entries in hf.items():
            add(cat, {n: fn for n, (fn, cfg) in entries.items() if hasattr(transformers, cfg)})

    add("plain", {
        "nn.Transformer": _plain(EncoderDecoderTransformer, _x(2, 6, 16), _x(2, 4, 16, seed=1)),
        "MLPMixer": _plain(MLPMixer, _pixels()),
        "WeightNormMLP": weight_norm_mlp,
        "SpectralNormMLP": spectral_norm_mlp,
        "LoRAMLP": _plain(LoRAMLP, _x(2, 8)),
        "WSConvNet": _plain(WSConvNet, _pixels(size=16)),
        "PointwiseOpsMLP": _plain(PointwiseOpsMLP, _x(2, 8)),
        "TinyUNet": _plain(TinyUNet, _pixels(size=16)),
        "UnusedParamMLP": _plain(UnusedParamMLP, _x(2, 8)),
        "LSTMClassifier": _plain(LSTMClassifier, _ids()),
        "GRUClassifier": _plain(GRUClassifier, _ids()),
        "Conv1dNet": _plain(Conv1dNet, _x(2, 4, 32)),
        "GatedMLP": _plain(GatedMLP, _x(2, 8)),
        "CumsumMLP": _plain(CumsumMLP, _x(2, 8)),
        "SortMLP": _plain(SortMLP, _x(2, 8)),
        "TopKMoE": _plain(TopKMoE, _x(2, 6, 8)),
    })
    return held, category


HELDOUT, CATEGORY = _build()
