"""Tiny models the GNN tests convert (built here, no config files)."""
from __future__ import annotations

import torch
from torch import nn

from nngraph.modules import Sine


def mlp(seed: int = 0, width: int = 6) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 2))


def siren(seed: int = 0, width: int = 32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, width), Sine(), nn.Linear(width, width), Sine(), nn.Linear(width, 1))


def cnn(seed: int = 0, k: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, k, padding=k // 2), nn.ReLU(), nn.Conv2d(4, 5, k, padding=k // 2),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))


class ResNet(nn.Module):
    """Two residual blocks (one with a nonlinearity inside) around Linear layers."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.inp, self.b1, self.b2, self.out = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = h + torch.relu(self.b1(h))
        h = h + self.b2(torch.tanh(h))
        return self.out(h)


def resnet(seed: int = 0) -> nn.Module:
    return ResNet(seed)


def transformer(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.0, batch_first=True).eval()


def _randomize_norm_buffers(model: nn.Module) -> nn.Module:
    """Running statistics that are not the trivial 0 / 1, so the test sees them."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval()


def cnn_norm(seed: int = 0) -> nn.Module:
    """Conv, BatchNorm, max pooling, GroupNorm and a flatten head: the conv, norm, pool and structural families."""
    torch.manual_seed(seed)
    return _randomize_norm_buffers(nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.GroupNorm(3, 6), nn.SiLU(), nn.Conv2d(6, 6, 3, groups=6),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 3)))


def mlp_norm(seed: int = 0) -> nn.Module:
    """BatchNorm1d, LayerNorm and Dropout between Linear layers."""
    torch.manual_seed(seed)
    return _randomize_norm_buffers(nn.Sequential(
        nn.Linear(3, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.1), nn.Linear(6, 5), nn.LayerNorm(5), nn.GELU(),
        nn.Linear(5, 2)))


class TokenModel(nn.Module):
    """Embedding, a Linear per token, mean over tokens: the embedding family."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.emb, self.lin, self.out = nn.Embedding(7, 6), nn.Linear(6, 5), nn.Linear(5, 2)

    def forward(self, tokens):
        return self.out(torch.relu(self.lin(self.emb(tokens))).mean(dim=1))


class ShapeBranching(nn.Module):
    """``if`` on a shape: torch.fx cannot trace it, so it is converted through torch.export."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.a, self.b, self.c = nn.Linear(2, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = torch.sin(30 * self.a(x)) if x.shape[-1] == 2 else x
        h = h + torch.relu(self.b(h))
        return self.c(h)


#: name -> (constructor, example input shape[, "tokens" for integer inputs below 7])
MODELS = {
    "mlp": (mlp, (4, 3)),
    "cnn3": (cnn, (2, 3, 8, 8)),
    "cnn5": (lambda seed=0: cnn(seed, k=5), (2, 3, 8, 8)),
    "resnet": (resnet, (4, 4)),
    "transformer": (transformer, (2, 5, 8)),
    "cnn_norm": (cnn_norm, (3, 2, 8, 8)),
    "mlp_norm": (mlp_norm, (4, 3)),
    "embedding": (TokenModel, (3, 5), "tokens"),
    "export": (ShapeBranching, (4, 2)),
}


def example(name: str, dtype=torch.float64, seed: int = 0):
    """``(model, (inputs,))`` for one of :data:`MODELS`, in ``dtype``."""
    make, shape, *kind = MODELS[name]
    gen = torch.Generator().manual_seed(seed)
    if kind == ["tokens"]:
        return make(seed).to(dtype), (torch.randint(0, 7, shape, generator=gen),)
    return make(seed).to(dtype), (torch.randn(*shape, generator=gen, dtype=dtype),)
