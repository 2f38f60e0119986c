"""Starting from what a model already knows, and training it in stages.

- `--init CKPT`: a FER checkpoint on another label set. The body is copied; the head's final layer
  keeps the rows (weights and bias) of classes whose names match and starts fresh rows for new
  classes (pain, contempt, ...).
- `--pretrained`: ImageNet weights for a timm backbone (`models.backbones`).
- Stages: stage 1 (`--freeze-epochs`) trains the head alone, the body frozen: no gradients, and
  its BatchNorm layers in eval mode, so their running statistics stay the pretrained ones. Stage 2
  trains all of the body or its last `--unfreeze` stages, at `--backbone-lr` x the head's rate, and
  starts a fresh warm-up + cosine so unfreezing never meets a high learning rate.
"""
from __future__ import annotations

from torch import nn

from ..models import FERModel, get_spec


def stage_of(cfg, epoch: int) -> int:
    """1 while only the head trains (epochs 1..freeze_epochs), else 2."""
    return 1 if epoch <= cfg.freeze_epochs else 2


def apply_stage(model: FERModel, cfg, epoch: int) -> int:
    """Set `requires_grad` for epoch `epoch` (1-based) and return its stage. A pure function of the
    epoch, so a resumed run freezes exactly what the interrupted one did."""
    stage = stage_of(cfg, epoch)
    body = model.body_stages()
    if stage == 1:
        frozen = {n for st in body for n in st}
    else:
        frozen = {n for st in (body[:-cfg.unfreeze] if cfg.unfreeze else []) for n in st}
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    return stage


def hold_batchnorm(model: FERModel, cfg) -> int:
    """After `model.train()`: put BatchNorm layers whose weights are frozen (and, with
    `--freeze-bn`, every BatchNorm of the body) back in eval mode. Returns how many."""
    held = 0
    for name, m in model.named_modules():
        if not isinstance(m, nn.modules.batchnorm._BatchNorm) or not name:
            continue
        frozen = any(not p.requires_grad for p in m.parameters(recurse=False))
        if frozen or (cfg.freeze_bn and not model.is_head(name)):
            m.eval()
            held += 1
    return held


def param_groups(model: FERModel, cfg) -> list[dict]:
    """Optimizer groups: head and body, each with and without weight decay (none on BatchNorm and
    biases: decaying them only hurts small nets); `lr_scale` is what the schedule multiplies."""
    groups = []
    for is_head, scale in ((True, 1.0), (False, cfg.backbone_lr)):
        named = [(n, p) for n, p in model.named_parameters() if model.is_head(n) == is_head]
        for decay in (True, False):
            params = [p for _, p in named if (p.ndim > 1) == decay]
            if params:
                groups.append({"params": params, "weight_decay": cfg.weight_decay if decay else 0.0,
                               "lr": cfg.lr * scale, "lr_scale": scale, "name": f"{'head' if is_head else 'body'}{'' if decay else '_no_wd'}"})
    return groups


def init_from(model: FERModel, source: dict, classes: list[str]) -> dict:
    """Copy a checkpoint payload's weights into `model` (built for `classes`). Returns which
    classes were kept and which are new. Shapes that do not fit are an error naming the layer."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in source["state_dict"].items()}
    old = list(source["classes"])
    prefix = model.classifier + "."
    own = model.state_dict()
    kept = [c for c in classes if c in old]
    for key, value in state.items():
        if key not in own:
            raise ValueError(f"--init: {key} of the checkpoint has no place in {source['model']['name']}")
        if key.startswith(prefix) and value.shape[:1] == (len(old),):
            rows = own[key].clone()
            for i, c in enumerate(classes):
                if c in old:
                    rows[i] = value[old.index(c)]
            value = rows
        elif value.shape != own[key].shape:
            raise ValueError(f"--init: layer {key} is {tuple(value.shape)} in the checkpoint but "
                             f"{tuple(own[key].shape)} here; keep its input size and channels (the defaults)")
        own[key] = value
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise ValueError(f"--init: the checkpoint lacks {sorted(missing)[:3]}: it is not a {model.model_name}")
    model.load_state_dict(own)
    return {"kept": kept, "new": [c for c in classes if c not in old], "dropped": [c for c in old if c not in classes]}


def collapse_warning(before: float, after: float, num_classes: int, cfg, normalization: tuple) -> str | None:
    """A diagnosis when validation accuracy falls apart on unfreezing (the EfficientNetB2 report's
    11 %): None when it held up."""
    if before - after < 0.1 and after > 1.5 / num_classes:
        return None
    mean, std = normalization
    spec = get_spec(cfg.arch)
    expected = spec.normalization(len(mean))
    causes = [f"BatchNorm statistics re-estimated from batches of {cfg.batch_size} on new data (--freeze-bn keeps "
              "the pretrained ones; a larger --batch-size helps)",
              f"a body learning rate too high for pretrained weights (--backbone-lr {cfg.backbone_lr:g}; try "
              f"{cfg.backbone_lr / 10:g})"]
    if (tuple(mean), tuple(std)) != expected and (cfg.pretrained or spec.mean != (0.5,)):
        causes.insert(0, f"inputs normalised with mean {list(mean)} std {list(std)}, while {cfg.arch} was "
                         f"pretrained on mean {list(expected[0])} std {list(expected[1])} (drop --mean/--std)")
    return (f"validation accuracy fell from {before:.1%} at the end of stage 1 to {after:.1%} after unfreezing the "
            "body. Likely causes: " + "; ".join(causes))
