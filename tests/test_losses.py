"""The four consistency terms: zero when the pathways agree, positive when they do not; each
ablation really removes its term or block; the semantic backbone's loading paths."""

from __future__ import annotations

import dataclasses

import pytest
import timm
import torch

from glsgn.config import LossConfig, Params
from glsgn.losses import BackboneError, GLSGNLoss, SemanticBackbone, TrainBatch
from glsgn.model import GLSGNOutput, build_model
from glsgn.model.resample import Region, downscale
from glsgn.train import VARIANT_CHANGES, variant_configs

from .conftest import TINY

LOSS = LossConfig(backbone_layers=(1,))


def _agreeing(model, target_whole: torch.Tensor, offset: float = 0.1):
    """Outputs of pathways that agree exactly: every B_i is the target at its scale, every
    attention map the same, and every pathway removes the same layer (a constant offset)."""
    region = Region(tuple(target_whole.shape[-2:]), (16, 48, 32, 64))
    y0, y1, x0, x1 = region.box
    y = target_whole[..., y0:y1, x0:x1]
    x_whole = target_whole + offset
    bf = model.bottleneck_factor
    out = GLSGNOutput(
        b_out=y.clone(),
        b_global=downscale(target_whole, model.global_factor),
        a_global=torch.full((1, 1, *[s // model.global_factor for s in region.size]), 0.5),
        b_local=[downscale(y, f) for f in model.factors],
        a_local=[torch.full((1, 1, 32 // (f * bf), 32 // (f * bf)), 0.5) for f in model.factors],
    )
    batch = TrainBatch(
        x=x_whole[..., y0:y1, x0:x1],
        y=y,
        x_global=downscale(x_whole, model.global_factor),
        y_global=downscale(target_whole, model.global_factor),
        region=region,
    )
    return out, batch


@pytest.mark.parametrize("texture", [False, True])
def test_consistency_terms_vanish_when_pathways_agree(texture):
    model = build_model(TINY)
    target = torch.rand(1, 3, 64, 96) if texture else torch.full((1, 3, 64, 96), 0.4)
    out, batch = _agreeing(model, target)
    terms = GLSGNLoss(LOSS, model)(out, batch)
    names = ["content", "attention", "intensity", "reconstruction", "pathway"]
    if not texture:  # semantics compare at one grid: exact agreement needs no fine detail
        names.append("semantic")
    for name in names:
        assert terms[name].abs().item() < 1e-6, (name, terms[name])


@pytest.mark.parametrize(
    "term, spoil",
    [
        ("content", lambda o, b: o.b_local.__setitem__(1, o.b_local[1] + 0.2 * torch.rand_like(
            o.b_local[1]))),
        ("attention", lambda o, b: o.a_local.__setitem__(0, torch.rand_like(o.a_local[0]))),
        ("intensity", lambda o, b: o.b_local.__setitem__(2, o.b_local[2] - 0.3)),
        ("semantic", lambda o, b: o.b_local.__setitem__(1, torch.rand_like(o.b_local[1]))),
    ],
)  # fmt: skip
def test_consistency_terms_are_positive_when_pathways_disagree(term, spoil):
    model = build_model(TINY)
    out, batch = _agreeing(model, torch.full((1, 3, 64, 96), 0.4))
    spoil(out, batch)
    assert GLSGNLoss(LOSS, model)(out, batch)[term].item() > 1e-3


def _real_batch(model):
    gs = model.cfg.global_scale
    x_whole, y_whole = torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96)
    region = Region((64, 96), (0, 32, 48, 80))
    y0, y1, x0, x1 = region.box
    return TrainBatch(
        x_whole[..., y0:y1, x0:x1], y_whole[..., y0:y1, x0:x1],
        downscale(x_whole, gs), downscale(y_whole, gs), region,
    )  # fmt: skip


@pytest.mark.parametrize("variant", list(VARIANT_CHANGES))
def test_each_variant_removes_its_term_or_block(variant):
    params = Params(model=TINY, loss=LOSS)
    mcfg, lcfg = variant_configs(params, variant)
    model = build_model(mcfg)
    loss = GLSGNLoss(lcfg, model)
    batch = _real_batch(model)
    terms = loss(model(batch.x, global_view=batch.x_global, region=batch.region), batch)
    removed = {k for k, v in VARIANT_CHANGES[variant][1].items() if v == 0}
    assert removed.isdisjoint(terms), (variant, sorted(terms))
    expected = sum(loss.weights[k] * v for k, v in terms.items() if k != "total")
    torch.testing.assert_close(terms["total"], expected)
    if variant == "no_attention":
        assert not any(type(m).__name__ == "PAC" for m in model.modules())
    # Every remaining parameter still learns from the total.
    terms["total"].backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not dead, dead


def _flat_grad(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel())
                      for p in model.parameters()])  # fmt: skip


def test_a_zero_weight_term_adds_no_gradient():
    """no_content's gradient equals the full loss's gradient minus the content term's."""
    model = build_model(TINY)
    batch = _real_batch(model)

    def grads(cfg):
        model.zero_grad()
        out = model(batch.x, global_view=batch.x_global, region=batch.region)
        GLSGNLoss(cfg, model)(out, batch)["total"].backward()
        return _flat_grad(model)

    full = grads(LOSS)
    off = grads(dataclasses.replace(LOSS, content=0.0))
    model.zero_grad()
    out = model(batch.x, global_view=batch.x_global, region=batch.region)
    (LOSS.content * GLSGNLoss(LOSS, model).content(out, batch)).backward()
    content_only = _flat_grad(model)
    torch.testing.assert_close(off, full - content_only, atol=1e-6, rtol=1e-4)


def test_semantic_backbone_loading(tmp_path):
    random = SemanticBackbone(LOSS)
    assert random.source.startswith("random resnet18")
    assert all(not p.requires_grad for p in random.parameters())
    with pytest.raises(BackboneError, match="allow_random_backbone is false"):
        SemanticBackbone(dataclasses.replace(LOSS, allow_random_backbone=False))
    with pytest.raises(BackboneError, match="no such file"):
        SemanticBackbone(dataclasses.replace(LOSS, backbone_weights=str(tmp_path / "none.pth")))
    torch.manual_seed(123)
    reference = timm.create_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    loaded = SemanticBackbone(dataclasses.replace(LOSS, backbone_weights=str(path)))
    assert str(path) in loaded.source
    torch.testing.assert_close(loaded.net.conv1.weight, reference.conv1.weight)
    assert not torch.equal(loaded.net.conv1.weight, random.net.conv1.weight)
