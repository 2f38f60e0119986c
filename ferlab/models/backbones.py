"""ImageNet backbones from timm (VGG, ResNet, EfficientNet, MobileNetV3, ConvNeXt) behind the
FERModel interface, with the course reports' heads as an option.

timm builds the body at any input size and channel count (for 1 channel it sums the pretrained
first-layer filters over RGB), and loads pretrained weights from the Hugging Face hub, its cache
or a local file. A checkpoint stores the whole fine-tuned model, so predict, explain, export and
serve rebuild it without weights files, network or the `pretrained` option.

timm (and torchvision, which it imports) is imported only when such a model is built: loading a
FerNet checkpoint stays fast.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .layers import Dropout
from .registry import FERModel, register

#: Every backbone listed here was pretrained with these statistics (timm's IMAGENET_DEFAULT_MEAN/STD;
#: a test checks each pretrained_cfg against them), so the registry knows them without importing timm.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Heads: `linear` (timm's own: global average pool + linear); `dense1024` (the VGG16 report: GAP,
#: Dense 1024 ReLU, Dropout 0.5, Dense N); `conv128` (the EfficientNetB2 report: Conv 128 3x3 ReLU,
#: GAP, Dense 128 ReLU, Dropout 0.3, Dense N).
HEADS = ("linear", "dense1024", "conv128")


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights were asked for and cannot be had; the message says where to put the file."""


def _head(kind: str, features: int, num_classes: int) -> nn.Sequential:
    pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if kind == "linear":
        return nn.Sequential(*pool, nn.Linear(features, num_classes))
    if kind == "dense1024":
        return nn.Sequential(*pool, nn.Linear(features, 1024), nn.ReLU(inplace=True), Dropout(0.5),
                             nn.Linear(1024, num_classes))
    if kind == "conv128":
        return nn.Sequential(nn.Conv2d(features, 128, 3, padding=1), nn.ReLU(inplace=True), *pool,
                             nn.Linear(128, 128), nn.ReLU(inplace=True), Dropout(0.3), nn.Linear(128, num_classes))
    raise ValueError(f"unknown head {kind!r}; choose one of: {', '.join(HEADS)}")


def _body(arch: str, in_chans: int, **kwargs) -> nn.Module:
    """timm's feature extractor without its pooling and classifier, and without the layers timm
    runs after pooling, which our heads replace: VGG's 4096-wide fc6/fc7 (the reports'
    `include_top=False` dropped them too: 102M of VGG16's 134M parameters) and MobileNetV3's
    1x1 conv_head."""
    import timm

    body = timm.create_model(arch, num_classes=0, global_pool="", in_chans=in_chans, **kwargs)
    if arch.startswith("vgg"):
        body.pre_logits = nn.Identity()
    if arch.startswith("mobilenetv3"):
        body.conv_head = nn.Identity()
    return body


class TimmBackbone(FERModel):
    """A timm body, then one of `HEADS`."""

    head_modules = ("head",)

    def __init__(self, arch: str, num_classes: int, in_chans: int, input_size: int, head: str = "linear"):
        super().__init__(num_classes, in_chans, input_size)
        self.arch, self.head_kind = arch, head
        self.backbone = _body(arch, in_chans)
        self.head = _head(head, self.backbone.num_features, num_classes)
        self.classifier = f"head.{len(self.head) - 1}"
        self.cam_layer = "backbone." + self.backbone.feature_info[-1]["module"]
        if arch.startswith("vgg"):  # before VGG's last max-pool: 3x3 instead of 1x1 at 48 px
            last_relu = max(i for i, m in enumerate(self.backbone.features) if isinstance(m, nn.ReLU))
            self.cam_layer = f"backbone.features.{last_relu}"
        # ConvNeXt normalises its features in its classifier head (after pooling); its pretrained
        # LayerNorm is applied here at every position instead, so our heads keep it
        self.final_norm = getattr(getattr(self.backbone, "head", None), "norm", None) if arch.startswith("convnext") \
            else None

    def body_stages(self) -> list[list[str]]:
        """timm's own coarse grouping (stem, then each stage), the one it uses for layer-wise lr decay."""
        from timm.models import group_parameters

        groups = group_parameters(self.backbone, self.backbone.group_matcher(coarse=True))
        return [[f"backbone.{n}" for n in names] for _, names in sorted(groups.items())]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone.forward_features(x)  # (B, C, H/32, W/32) for most bodies
        return x if self.final_norm is None else self.final_norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def load_pretrained(self, source: str) -> str:
        """Copy ImageNet weights into the body: `hub` (timm's Hugging Face download or its cache) or
        a local file (.safetensors, .pth, .bin). Returns where they came from; never falls back
        to random weights."""
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(self.arch)
        hub_id = getattr(cfg, "hf_hub_id", None) or self.arch
        where = f"https://huggingface.co/{hub_id}"
        if source == "hub":
            try:
                pre = _body(self.arch, self.in_chans, pretrained=True)
            except Exception as e:  # offline, no cache, hub down: each library raises its own type
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
                raise PretrainedWeightsError(
                    f"could not get ImageNet weights for {self.arch} from the Hugging Face hub ({first}). Offline: "
                    f"download model.safetensors from {where} on a connected machine and pass "
                    f"--pretrained path/to/model.safetensors, or put it in the Hugging Face cache (HF_HOME, "
                    f"default ~/.cache/huggingface) where timm looks first") from None
            origin = f"hub:{hub_id}"
        else:
            path = Path(source)
            if not path.is_file():
                raise PretrainedWeightsError(
                    f"--pretrained {source}: no such file. Download model.safetensors from {where} and pass its "
                    "path, or pass --pretrained alone to fetch it from the Hugging Face hub")
            _check_file(self.arch, path)
            pre = _body(self.arch, self.in_chans, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
            origin = str(path)
        self.backbone.load_state_dict(pre.state_dict())
        return origin


def _check_file(arch: str, path: Path) -> None:
    """Refuse a file that is not this architecture's ImageNet weights (timm itself loads leniently
    and only warns, which would leave some layers random)."""
    import timm
    from timm.models import load_state_dict

    try:
        state = load_state_dict(str(path), weights_only=True)
    except Exception as e:  # a truncated download, a pickle that wants code, not weights at all
        detail = " ".join(str(e).split())[:200]
        raise PretrainedWeightsError(f"--pretrained {path} is not a readable weights file ({type(e).__name__}: "
                                     f"{detail})") from None
    want = {k: v.shape for k, v in timm.create_model(arch).state_dict().items()}
    missing = sorted(set(want) - set(state))
    extra = sorted(set(state) - set(want))
    wrong = sorted(k for k in set(want) & set(state) if tuple(state[k].shape) != tuple(want[k]))
    if missing or extra or wrong:
        detail = "; ".join(f"{what} {len(keys)} (e.g. {keys[0]})" for what, keys in
                           (("missing", missing), ("unexpected", extra), ("other shape", wrong)) if keys)
        raise PretrainedWeightsError(f"--pretrained {path} does not hold {arch} weights ({detail}); download the "
                                     f"file of {arch} itself")


def _register(arch: str, input_size: int, in_chans: int, about: str, default_head: str = "linear") -> None:
    def factory(num_classes, in_chans, input_size, head=default_head):
        return TimmBackbone(arch, num_classes, in_chans, input_size, head)

    register(arch, input_size=input_size, in_chans=in_chans, mean=IMAGENET_MEAN, std=IMAGENET_STD,
             options={"head": HEADS}, description=f"timm {about} (ImageNet backbone; --pretrained, --head "
                                                  f"{'/'.join(HEADS)}, default {default_head})")(factory)


# Default sizes are the reports' where a report used the network, else 96 px (3x3 final maps).
_register("vgg16", 100, 3, "VGG16 conv base; report: 100x100x3, --head dense1024", "dense1024")
_register("vgg19", 48, 3, "VGG19 conv base; report: 48x48x3")
_register("resnet18", 96, 3, "ResNet-18")
_register("resnet34", 96, 3, "ResNet-34")
_register("resnet50", 96, 3, "ResNet-50")
_register("efficientnet_b0", 96, 3, "EfficientNet-B0")
_register("efficientnet_b2", 96, 3, "EfficientNet-B2; report: 96x96x3, --head conv128", "conv128")
_register("mobilenetv3_small_100", 96, 3, "MobileNetV3-Small 1.0")
_register("mobilenetv3_large_100", 96, 3, "MobileNetV3-Large 1.0")
_register("convnext_atto", 96, 3, "ConvNeXt-Atto")
_register("convnext_tiny", 96, 3, "ConvNeXt-Tiny")
