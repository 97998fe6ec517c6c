"""Small networks with the topologies the structure derivation must handle (or refuse), for the tests. Also a
model file as users write them: ``tests/nets.py:MyNet`` is a valid ``--model``."""
import torch
import torch.nn.functional as F
from torch import nn


class _TwoConvs(nn.Module):
    """conv a (8 channels), conv b (16), a linear head on the pooled features; subclasses put an operation
    between a and b."""

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.a = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 16, 3, padding=1)
        self.head = nn.Linear(16, num_classes)


class PadNet(_TwoConvs):
    """Option-A shortcut: the 8-channel stream is zero-padded to 16 channels and added."""

    def forward(self, x):
        x = torch.relu(self.a(x))
        y = self.b(x) + F.pad(x, (0, 0, 0, 0, 4, 4))
        return self.head(y.mean((2, 3)))


class ChannelNorm(_TwoConvs):
    """A LayerNorm over channels after a conv (channels-last LayerNorm, as in ConvNeXt)."""

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__(num_classes, in_channels)
        self.norm = nn.LayerNorm(8)

    def forward(self, x):
        x = self.norm(self.a(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.head(self.b(x).mean((2, 3)))


class Shuffle(_TwoConvs):
    """Channel mean subtracted across channels: every output channel depends on every input channel."""

    def forward(self, x):
        x = self.a(x)
        x = x - x.mean(1, keepdim=True)
        return self.head(self.b(x).mean((2, 3)))


class Broken(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(10, num_classes)   # wrong size: 8 features arrive

    def forward(self, x):
        return self.fc(self.a(x).mean((2, 3)))


class MyNet(nn.Module):
    """BatchNorm, a residual add, a 1x1 expansion feeding a depthwise conv, global pooling."""

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.expand = nn.Sequential(nn.Conv2d(16, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU6())
        self.depthwise = nn.Sequential(nn.Conv2d(48, 48, 3, padding=1, groups=48, bias=False), nn.BatchNorm2d(48),
                                       nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(48, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.body(x))
        x = self.project(self.depthwise(self.expand(x)))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class WithFeatures(_TwoConvs):
    """Returns (logits, features) in every mode, as models with auxiliary outputs do."""

    def forward(self, x):
        features = torch.relu(self.b(torch.relu(self.a(x)))).mean((2, 3))
        return self.head(features), features


class FeaturesOnly(WithFeatures):
    """Returns a mapping without logits."""

    def forward(self, x):
        return {"features": super().forward(x)[1]}


class NotANumber(WithFeatures):
    """Logits that are all NaN."""

    def forward(self, x):
        return super().forward(x)[0] * float("nan")


def tiny_vit(num_classes=10, in_channels=3):
    """torchvision's VisionTransformer, two layers of width 64 (4 heads, MLP 128) on 32x32 inputs, patches of 8."""
    from torchvision.models.vision_transformer import VisionTransformer
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128,
                              num_classes=num_classes)
    if in_channels != 3:
        model.conv_proj = nn.Conv2d(in_channels, 64, 8, stride=8)
    return model


def tiny_swin(num_classes=10, in_channels=3):
    """torchvision's SwinTransformer, two blocks per stage of widths 16-32-64-128 (1-8 heads), windows of 4, on
    32x32 inputs (patches of 2)."""
    from torchvision.models.swin_transformer import SwinTransformer
    model = SwinTransformer(patch_size=[2, 2], embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8],
                            window_size=[4, 4], num_classes=num_classes)
    if in_channels != 3:
        model.features[0][0] = nn.Conv2d(in_channels, 16, 2, stride=2)
    return model


def tiny_convnext(num_classes=10, in_channels=3):
    """torchvision's ConvNeXt with one block per stage (depths 1,1,1,1), widths 16-32-64-128."""
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    model = ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, 64, 1), CNBlockConfig(64, 128, 1),
                      CNBlockConfig(128, None, 1)], num_classes=num_classes)
    if in_channels != 3:
        model.features[0][0] = nn.Conv2d(in_channels, 16, 4, stride=4)
    return model


class UserAttention(nn.Module):
    """Attention written as users (and timm) write it: one ``qkv`` linear layer reshaped into ``num_heads`` heads,
    then ``proj``; not a ``MultiheadAttention``."""

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads, self.qkv, self.proj = num_heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        n, t, c = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(n, t, c))


class UserViT(nn.Module):
    """Patches of 8 embedded in 32 channels, one block (UserAttention with 4 heads, an MLP of 64), mean-pooled."""

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.embed = nn.Conv2d(in_channels, 32, 8, stride=8)
        self.norm1, self.attn = nn.LayerNorm(32), UserAttention(32, 4)
        self.norm2, self.mlp = nn.LayerNorm(32), nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return self.head(x.mean(1))
