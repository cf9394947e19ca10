"""torchvision-free benchmark models beside :mod:`benchmarks.resnet`: VGG-11 and a ViT-B-sized
transformer stack."""
from __future__ import annotations

from torch import Tensor, nn

VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def vgg11(num_classes: int = 1000) -> nn.Sequential:
    """VGG-11 as torchvision builds it (no batch norm): 132,863,336 parameters, a flatten head
    whose first Linear reads 512 channels x 7 x 7 positions (so its edges carry 7x7 kernels)."""
    layers, c_in = [], 3
    for v in VGG11:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU()]
            c_in = v
    layers += [nn.AdaptiveAvgPool2d(7), nn.Flatten(),
               nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(),
               nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(),
               nn.Linear(4096, num_classes)]
    return nn.Sequential(*layers)


class ViTStack(nn.Module):
    """ViT-B/16 sized (86.4M parameters): a patch embedding (a Linear on flattened 16x16x3
    patches, which equals the stride-16 conv on a patchified image), 12 pre-norm
    ``nn.TransformerEncoderLayer`` s of width 768 (12 heads, MLP 3072), a LayerNorm and a
    1000-way head on the mean token. No class token or positional embedding (raw parameters
    used inside ops are not converted yet)."""

    def __init__(self, width: int = 768, depth: int = 12, heads: int = 12, mlp: int = 3072,
                 patch_dim: int = 16 * 16 * 3, num_classes: int = 1000):
        super().__init__()
        self.embed = nn.Linear(patch_dim, width)
        self.blocks = nn.Sequential(*[
            nn.TransformerEncoderLayer(width, heads, mlp, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, patches: Tensor) -> Tensor:  # (B, T, patch_dim) -> (B, num_classes)
        x = self.norm(self.blocks(self.embed(patches)))  # (B, T, width)
        return self.head(x.mean(1))  # (B, num_classes)
