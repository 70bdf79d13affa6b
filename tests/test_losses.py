"""The four consistency terms: zero when the pathways agree, positive when they do not; each
ablation really removes its term or block; the semantic backbone's loading paths."""

from __future__ import annotations

import dataclasses

import pytest
import timm
import torch

from glsgn import losses
from glsgn.config import ConfigError, LossConfig, Params
from glsgn.losses import BackboneError, GLSGNLoss, SemanticBackbone, TrainBatch
from glsgn.model import GLSGNOutput, build_model
from glsgn.model.pyramid import high_band
from glsgn.model.resample import Region, downscale, to_grid
from glsgn.variants import variant_configs, variants

from .conftest import TINY, build

LOSS = LossConfig(backbone_layers=(1,))


def _ideal(model, target_whole: torch.Tensor):
    """Every output the target at its own scale, every attention map the same, on a crop whose
    input is a haze-like degradation (x - y changes sign with the scene, as haze's does)."""
    region = Region(tuple(target_whole.shape[-2:]), (16, 48, 32, 64))
    y0, y1, x0, x1 = region.box
    y = target_whole[..., y0:y1, x0:x1]
    t = torch.linspace(0.3, 0.9, target_whole.shape[-1]).expand_as(target_whole)
    x_whole = target_whole * t + 0.6 * (1 - t)
    bf, gf = model.geometry.bottleneck, model.geometry.global_factor
    out = GLSGNOutput(
        b_out=y.clone(),
        b_global=downscale(target_whole, gf),
        a_global=torch.full((1, 1, *[s // gf for s in region.size]), 0.5),
        b_local=[downscale(y, f) for f in model.geometry.factors],
        a_local=[
            torch.full((1, 1, 32 // (f * bf), 32 // (f * bf)), 0.5) for f in model.geometry.factors
        ],
        geometry=model.geometry,
    )
    batch = TrainBatch(
        x=x_whole[..., y0:y1, x0:x1],
        y=y,
        x_global=downscale(x_whole, gf),
        y_global=downscale(target_whole, gf),
        region=region,
    )
    return out, batch


CONSISTENCY = ["content", "attention", "intensity", "semantic"]  # the paper's four


def test_the_paper_s_four_terms_are_registered_in_order():
    assert list(losses.CONSISTENCY) == CONSISTENCY


@pytest.mark.parametrize("texture", [False, True])
def test_every_term_is_exactly_zero_at_ideal_outputs(texture):
    model = build_model(TINY)
    target = torch.rand(1, 3, 64, 96) if texture else torch.full((1, 3, 64, 96), 0.4)
    out, batch = _ideal(model, target)
    terms = GLSGNLoss(LOSS)(out, batch)
    assert set(CONSISTENCY + ["reconstruction", "pathway_global", "pathway_local"]) < set(terms)
    for name, value in terms.items():
        assert value.abs().item() <= 1e-6, (name, value)


def test_the_semantic_term_compares_each_output_at_its_own_scale():
    """The defect this guards against: B_3 and B_g, bilinearly up-sampled and compared with the
    sharp target, gave 0.062 at ideal outputs and rewarded over-sharpened coarse pathways."""
    model = build_model(TINY)
    out, batch = _ideal(model, torch.rand(1, 3, 64, 96))
    loss = GLSGNLoss(LOSS)
    assert losses.semantic(loss, out, batch).item() <= 1e-6
    sharper = out.b_local[2] + 0.3 * high_band(out.b_local[2], batch.region.coarser(4))
    out.b_local[2] = sharper
    assert losses.semantic(loss, out, batch).item() > 1e-3


@pytest.mark.parametrize(
    "term, spoil",
    [
        (
            "content",
            lambda o, b: o.b_local.__setitem__(
                1, o.b_local[1] + 0.2 * torch.rand_like(o.b_local[1])
            ),
        ),
        ("attention", lambda o, b: o.a_local.__setitem__(0, torch.rand_like(o.a_local[0]))),
        ("attention", lambda o, b: setattr(o, "a_global", torch.rand_like(o.a_global))),
        ("intensity", lambda o, b: o.b_local.__setitem__(2, o.b_local[2] - 0.3)),
        ("intensity", lambda o, b: setattr(o, "b_global", b.x_global.clone())),  # removes nothing
        ("semantic", lambda o, b: o.b_local.__setitem__(1, torch.rand_like(o.b_local[1]))),
        ("semantic", lambda o, b: setattr(o, "b_out", torch.rand_like(o.b_out))),
    ],
)
def test_consistency_terms_are_positive_when_pathways_disagree(term, spoil):
    model = build_model(TINY)
    out, batch = _ideal(model, torch.rand(1, 3, 64, 96))
    spoil(out, batch)
    assert GLSGNLoss(LOSS)(out, batch)[term].item() > 1e-3


def test_intensity_sees_the_amount_removed_not_its_sign():
    """A pathway that removes as much as the global one, of the opposite sign, meets the
    intensity term but not the content term: the two ask different things."""
    model = build_model(TINY)
    out, batch = _ideal(model, torch.rand(1, 3, 64, 96))
    x3 = downscale(batch.x, 4)
    out.b_local[2] = x3 + (x3 - out.b_local[2])  # B_3 = x_3 + removed layer: the sign flipped
    terms = GLSGNLoss(LOSS)(out, batch)
    assert terms["content"].item() > 1e-3
    assert terms["intensity"].item() <= 1e-6


def test_content_and_intensity_constrain_what_reconstruction_leaves_free():
    """B_1 shifted by a constant: the pyramid takes only B_1's band, so B_out and every
    reconstruction loss (B_out's, B_g's and each local pathway's on what it gives the pyramid)
    stay at 0, but B_1 no longer agrees with B_2 nor removes what the global pathway removes.
    An L1 on the whole of each B_i would see the shift too, and would bound both terms."""
    model = build_model(TINY)
    out, batch = _ideal(model, torch.rand(1, 3, 64, 96))
    r = batch.region

    def fuse(o):
        bs = [(b, r.coarser(f)) for b, f in zip(o.b_local, model.geometry.factors, strict=True)]
        return model.fusion(bs, (o.b_global, model.geometry.global_grid(r))).b

    with torch.no_grad():
        before = fuse(out)
        out.b_local[0] = out.b_local[0] + 0.1
        torch.testing.assert_close(fuse(out), before, rtol=0, atol=1e-6)
    terms = GLSGNLoss(LOSS)(out, batch)
    for name in ("reconstruction", "pathway_global", "pathway_local"):
        assert terms[name].item() <= 1e-6, name
    for name in ("content", "intensity"):
        assert terms[name].item() > 1e-2, name
    assert (out.b_local[0] - batch.y).abs().mean().item() > 0.09  # a whole-output L1 sees it


def _real_batch(model):
    gs = model.cfg.global_scale
    x_whole, y_whole = torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96)
    region = Region((64, 96), (0, 32, 48, 80))
    y0, y1, x0, x1 = region.box
    return TrainBatch(
        x_whole[..., y0:y1, x0:x1],
        y_whole[..., y0:y1, x0:x1],
        downscale(x_whole, gs),
        downscale(y_whole, gs),
        region,
    )


APPLIES = {  # the terms each architecture can compute (full: all of them)
    "no_pac": set(CONSISTENCY) - {"attention"},  # no A_i to compare
    "global_only": set(),  # one pathway: nothing to be consistent with, except semantics
    "fullres": set(),
    "fullres_flops": set(),
}


def _modules(model) -> set[str]:
    return {type(m).__name__ for m in model.modules()}


@pytest.mark.parametrize("variant", list(variants()))
def test_each_variant_changes_one_thing(variant):
    """Term-only rows switch one weight off and keep every block; block-only rows remove their
    block and keep every term that still applies; the baselines are one U-Net."""
    params = Params(model=TINY, loss=LOSS)
    mcfg, lcfg = variant_configs(params, variant)
    model = build(mcfg)
    loss = GLSGNLoss(lcfg)
    batch = _real_batch(model)
    terms = loss(model(batch.x, global_view=batch.x_global, region=batch.region), batch)
    full_terms = set(CONSISTENCY) | {"reconstruction", "pathway_global", "pathway_local"}
    row = variants()[variant]
    if row.group == "term":
        (term,) = row.loss["consistency"]  # exactly one weight
        assert row.loss == {"consistency": {term: 0.0}} and not row.model
        assert set(terms) - {"total"} == full_terms - {term}
        assert _modules(model) == _modules(build_model(TINY))
    elif row.group == "block":
        assert not row.loss and len(row.model) == 1
        consistency = APPLIES.get(variant, set(CONSISTENCY))
        assert {t for t in terms if t in CONSISTENCY} == consistency | {"semantic"}
        assert len(_modules(model)) < len(_modules(build_model(TINY))) or variant == "global_only"
    else:
        assert set(terms) - {"total"} == (
            {"reconstruction", "semantic"} if row.group == "baseline" else full_terms
        )
    expected = sum(loss.weights[k] * v for k, v in terms.items() if k != "total")
    torch.testing.assert_close(terms["total"], expected)
    # Every parameter learns from the total.
    terms["total"].backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not dead, dead


def _flat_grad(model) -> torch.Tensor:
    return torch.cat(
        [
            p.grad.flatten() if p.grad is not None else torch.zeros(p.numel())
            for p in model.parameters()
        ]
    )


def test_a_zero_weight_term_adds_no_gradient():
    """no_content's gradient equals the full loss's gradient minus the content term's."""
    model = build_model(TINY)
    batch = _real_batch(model)

    def grads(cfg):
        model.zero_grad()
        out = model(batch.x, global_view=batch.x_global, region=batch.region)
        GLSGNLoss(cfg)(out, batch)["total"].backward()
        return _flat_grad(model)

    full = grads(LOSS)
    off = grads(dataclasses.replace(LOSS, consistency={**LOSS.consistency, "content": 0.0}))
    model.zero_grad()
    out = model(batch.x, global_view=batch.x_global, region=batch.region)
    loss = GLSGNLoss(LOSS)
    (LOSS.consistency["content"] * losses.content(loss, out, batch)).backward()
    content_only = _flat_grad(model)
    torch.testing.assert_close(off, full - content_only, atol=1e-6, rtol=1e-4)


def test_the_semantic_term_equals_one_backbone_pass_per_image(monkeypatch):
    """Batching images by shape, passing each distinct one once and the targets without a
    graph are speed only: the value and the gradient equal a plain pass per image of every
    pair (the reference), and no target reaches the backbone with a graph."""
    model = build(TINY)
    batch = _real_batch(model)
    loss = GLSGNLoss(LOSS)
    out = model(batch.x, global_view=batch.x_global, region=batch.region)
    net = loss.backbone

    def reference() -> torch.Tensor:
        outs = loss.outputs(out, batch)
        r = batch.region
        pairs = [(out.b_out, batch.y)] + [(b, to_grid(batch.y, r, rb)) for b, rb in outs]
        pairs += [(to_grid(a, ra, rb), b) for (a, ra), (b, rb) in zip(outs, outs[1:], strict=False)]
        per_pair = [
            torch.stack(
                [(fa - fb).abs().mean() for fa, fb in zip(net(a), net(b), strict=True)]
            ).mean()
            for a, b in pairs
        ]
        return torch.stack(per_pair).mean()

    expected = reference()
    expected.backward(retain_graph=True)
    want = _flat_grad(model)
    model.zero_grad()
    seen = []
    monkeypatch.setattr(
        net, "forward", lambda x: seen.append(x) or SemanticBackbone.forward(net, x)
    )
    got = losses.semantic(loss, out, batch)
    got.backward()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(_flat_grad(model), want, rtol=1e-4, atol=1e-6)
    assert [x.requires_grad for x in seen].count(False) >= 1  # the targets' passes
    pairs = 2 * len(loss.outputs(out, batch))  # B_out and each output with its target, adjacent
    assert sum(x.shape[0] for x in seen) < 2 * pairs * batch.x.shape[0]  # each image once


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


def test_an_unknown_term_is_refused_naming_it():
    with pytest.raises(ConfigError, match=r"loss\.consistency\.cotnent"):
        GLSGNLoss(dataclasses.replace(LOSS, consistency={"cotnent": 0.1}))
