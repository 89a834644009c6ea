"""Backbones: one factory (timm's) for every architecture, with logits, pooled features and feature maps."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ackd_bench.benchmark.errors import AckdBenchError

# The paper's backbones (reference/paper-notes.md §4): ResNet34, MobileNetV2, ShuffleNetV2 x0.5.
PAPER_ARCHS = ("resnet34", "mobilenetv2_100", "shufflenet_v2_x0_5")


class ArchError(AckdBenchError):
    """Unknown architecture name."""


@dataclass
class ModelOutput:
    """What a classifier returns: logits (B, K), pooled features (B, D), last feature map (B, C, h, w)."""

    logits: Tensor
    features: Tensor
    feature_map: Tensor


class Classifier(nn.Module):
    """A timm backbone as a classifier that also exposes its pooled features and last feature map.

    Args:
        arch: any timm model name (``timm.list_models()``), or ``shufflenet_v2_x0_5``.
        in_chans: input channels (10 for the MS teacher, 3 for the RGB student).
        num_classes: number of classes.
    """

    def __init__(self, arch: str, in_chans: int, num_classes: int) -> None:
        super().__init__()
        import timm

        check_arch(arch)
        # Trained from scratch, as in the paper (no hub downloads: weights are never fetched).
        self.body = timm.create_model(arch, pretrained=False, in_chans=in_chans, num_classes=num_classes)
        self.arch = arch
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.num_features = self.body.num_features

    def forward(self, x: Tensor) -> ModelOutput:
        fmap = self.body.forward_features(x)
        pooled = self.body.forward_head(fmap, pre_logits=True)
        return ModelOutput(logits=self.body.get_classifier()(pooled), features=pooled, feature_map=fmap)


class ShuffleNetV2(nn.Module):
    """torchvision's ShuffleNetV2 with any number of input channels and timm's feature API."""

    def __init__(self, width: str = "x0_5", in_chans: int = 3, num_classes: int = 1000, **_: object) -> None:
        super().__init__()
        import torchvision

        net = getattr(torchvision.models, f"shufflenet_v2_{width}")(weights=None, num_classes=num_classes)
        first = net.conv1[0]
        net.conv1[0] = nn.Conv2d(in_chans, first.out_channels, first.kernel_size, first.stride,
                                 first.padding, bias=False)
        self.net = net
        self.num_features = net.fc.in_features
        self.num_classes = num_classes

    def forward_features(self, x: Tensor) -> Tensor:
        n = self.net
        x = n.maxpool(n.conv1(x))
        return n.conv5(n.stage4(n.stage3(n.stage2(x))))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = x.mean((2, 3))
        return x if pre_logits else self.net.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.net.fc

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


_REGISTERED = False


def _register_shufflenet() -> None:
    """Register ShuffleNetV2 x0.5 (timm has none) so that timm.create_model builds every backbone."""
    global _REGISTERED
    if _REGISTERED:
        return
    import timm
    from timm.models import register_model

    if not timm.is_model("shufflenet_v2_x0_5"):

        @register_model
        def shufflenet_v2_x0_5(pretrained: bool = False, **kwargs) -> ShuffleNetV2:
            if pretrained:
                raise ArchError("shufflenet_v2_x0_5 is trained from scratch here; no pretrained weights")
            kwargs = {k: v for k, v in kwargs.items() if k in ("in_chans", "num_classes")}
            return ShuffleNetV2("x0_5", **kwargs)

    _REGISTERED = True


def check_arch(arch: str) -> None:
    """Raise :class:`ArchError` (with close names) unless ``arch`` is a timm model or ``shufflenet_v2_x0_5``."""
    import timm

    _register_shufflenet()
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `timm.list_models()`"
        raise ArchError(f"unknown architecture {arch!r}{hint} (paper's: {', '.join(PAPER_ARCHS)})")


def create_classifier(arch: str, in_chans: int, num_classes: int, seed: int | None = None) -> Classifier:
    """A freshly initialised classifier; ``seed`` makes the initial weights reproducible."""
    if seed is not None:
        torch.manual_seed(seed)
    return Classifier(arch, in_chans, num_classes)
