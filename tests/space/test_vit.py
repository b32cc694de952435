"""The ViT family: structure (brute-force size), weight sharing against a reference written with plain torch
ops, group-wise quantization of the head-split matrices, token kernels."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hao
from hao.errors import CandidateError, ConfigError
from hao.kernel import KernelSpec
from hao.space.vit import ViTSpace
from hao.testing import check_space
from hao.testing.spaces import brute_force_size, count_module_macs

TINY = dict(input_shape=(1, 8, 8), patch=4, embed=8, head_dim=4, depths=(1, 2), heads=(1, 2), mlp_ratios=(1, 2),
            w_bits=(4, 8), a_bits=(8,), groups=(0, 1))


def test_tiny_space_size_is_brute_force_and_passes_the_battery():
    sp = ViTSpace("vit-tiny", **TINY)
    assert sp.size() == brute_force_size(sp) == sum(1 for _ in sp.enumerate())
    check_space(sp, n=50, forward=3)


def test_registered_space_and_invalid_candidates():
    sp = hao.get_space("vit-fmnist")
    assert sp.family == "vit" and sp.tokens == 49 and sp.size() > 10**19
    with pytest.raises(CandidateError, match=r"L0.heads.*allowed values: \[1, 2, 4\]"):
        sp.make({"L0.heads": 3})
    with pytest.raises(CandidateError, match="allowed values"):
        sp.make({"L1.qkv.groups": 5})
    with pytest.raises(ConfigError, match="patch=5 must be a positive divisor"):
        ViTSpace("bad", patch=5)
    with pytest.raises(ConfigError, match=r"groups \[3\] .* must divide head_dim=16: valid .* \[1, 2, 4, 8, 16\]"):
        ViTSpace("bad", groups=(0, 3))


def _reference_forward(net, space, cand, x):
    """The candidate's network computed from the supernet's full weights with plain torch ops (float bits)."""
    d = cand.as_dict()
    p, e, hd = space.patch, space.embed, space.head_dim
    b = x.shape[0]
    t = x.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).reshape(b, -1, x.shape[1] * p * p)
    z = F.linear(t, net.patch_embed.weight, net.patch_embed.bias) + net.pos
    for i in range(d["depth"]):
        blk, h = net.blocks[i], d[f"L{i}.heads"]
        w = h * hd
        y = blk.attn.norm(z)
        q, k, v = (F.linear(y, m.weight[:w], m.bias[:w]).reshape(b, -1, h, hd).transpose(1, 2)
                   for m in (blk.attn.q, blk.attn.k, blk.attn.v))
        a = torch.softmax(q @ k.transpose(-2, -1) / hd ** 0.5, dim=-1)
        z = z + F.linear((a @ v).transpose(1, 2).reshape(b, -1, w), blk.attn.o.weight[:, :w], blk.attn.o.bias)
        hid = d[f"L{i}.mlp_ratio"] * e
        y = F.gelu(F.linear(blk.mlp.norm(z), blk.mlp.fc1.weight[:hid], blk.mlp.fc1.bias[:hid]))
        z = z + F.linear(y, blk.mlp.fc2.weight[:, :hid], blk.mlp.fc2.bias)
    return F.linear(net.norm(z).mean(1), net.classifier.weight, net.classifier.bias)


def test_weight_sharing_slices_heads_hidden_units_and_blocks():
    sp = ViTSpace("vit-float", embed=16, head_dim=4, heads=(1, 2, 4), mlp_ratios=(1, 2), depths=(1, 2, 3),
                  w_bits=(32,), a_bits=(32,), groups=(0,), pin_bits=32)
    net = sp.supernet(seed=3).eval()
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    for c in [sp.largest(), sp.smallest()] + [sp.sample(rng) for _ in range(4)]:
        with torch.no_grad():
            ref = _reference_forward(net, sp, c, x)
            built = sp.build(c, net).eval()(x)
            sp.activate(net, c)
            shared = net(x)
        torch.testing.assert_close(built, ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(shared, ref, atol=1e-5, rtol=1e-5)


def test_quantized_supernet_forward_equals_the_built_network_with_groups():
    sp = hao.get_space("vit-fmnist")
    net = sp.supernet(seed=1).eval()
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    rng = np.random.default_rng(5)
    for _ in range(3):
        c = sp.sample(rng)
        with torch.no_grad():
            built = sp.build(c, net).eval()(x)
            sp.activate(net, c)
            torch.testing.assert_close(net(x), built, atol=1e-5, rtol=1e-5)


def test_activation_statistics_count_features_not_tokens():
    """Token inputs are (batch, tokens, features): a layer's activation 'channels' are its features."""
    from hao.proxy.sensitivity import activation_quant_mse

    sp = ViTSpace("vit-tiny", **TINY)
    net = sp.supernet(0).eval()
    x = [(torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)),)]
    stats = activation_quant_mse(net, x, ["blocks.0.attn.o", "blocks.0.mlp.fc2", "patch_embed"])
    assert [stats[p]["channels"] for p in ("blocks.0.attn.o", "blocks.0.mlp.fc2", "patch_embed")] == [8, 16, 16]


def test_groups_follow_heads_and_axis():
    sp = hao.get_space("vit-fmnist")
    c = sp.make({"depth": 2, "L0.heads": 2, "L0.qkv.groups": 2, "L0.o.groups": 0, "L0.qkv.w_bits": 4})
    m = sp.build(c)
    q, o = m.blocks[0].attn.q, m.blocks[0].attn.o
    assert (q.w_groups, q.w_axis, q.out_features) == (4, 0, 32)     # 2 per head x 2 heads, along output rows
    assert (o.w_groups, o.w_axis, o.in_features) == (1, 1, 32)       # one range for the whole matrix
    with torch.no_grad():
        wq, w = q._quantized_weight(), q.weight
        for g in range(4):                                          # each 8-row group on its own 4-bit grid
            s = float(w[8 * g: 8 * g + 8].abs().max()) / 7
            codes = wq[8 * g: 8 * g + 8] / s
            assert torch.allclose(codes, codes.round(), atol=1e-4) and float(codes.abs().max()) == pytest.approx(7)


def test_per_head_groups_lose_less_on_an_attention_output_with_an_outlier_head():
    """Measured on the layer's output: Q's rows of one head scaled x20, 4-bit weights; one range per head
    keeps the other heads' grid, one range for the matrix does not."""
    sp = hao.get_space("vit-fmnist")
    net = sp.supernet(seed=0).eval()
    with torch.no_grad():
        net.blocks[0].attn.q.weight[:16] *= 20
    x = torch.randn(4, 49, 64, generator=torch.Generator().manual_seed(1))
    errs = {}
    for code in (0, 1, 2):
        c = sp.make({"L0.heads": 4, "L0.qkv.w_bits": 4, "L0.qkv.groups": code})
        q = sp.build(c, net).blocks[0].attn.q.eval()
        with torch.no_grad():
            ref = F.linear(x, q.weight, q.bias)
            errs[code] = float((q(x) - ref)[..., 16:].pow(2).mean())   # error on the three ordinary heads
    assert errs[1] < 0.1 * errs[0] and errs[2] <= errs[1] * 1.05


def test_token_kernels_macs_and_the_predictor_refusal():
    sp = hao.get_space("vit-fmnist")
    c = sp.largest()
    ks = sp.kernels(c)
    assert {k.op for k in ks} >= {"linear", "bmm", "softmax", "layernorm", "add", "avgpool", "dense"}
    assert sum(k.macs for k in ks) == count_module_macs(sp.build(c), sp.input_shape)
    qk = KernelSpec("bmm", 64, 4 * 49, 49, 1, 1, 1, 4)
    assert qk.macs == 4 * 49 * 16 * 49 and qk.params == 0 and qk.out_h == 49
    assert KernelSpec("softmax", 196, 196, 49, 1, groups=4).elementwise_ops == 196 * 49
    assert KernelSpec.from_json(qk.to_json()) == qk
    from hao.latency.predictor import kernel_features
    with pytest.raises(ConfigError, match="transformer .token. kernel"):
        kernel_features([qk])


def test_sensitivities_see_the_group_wise_quantizer():
    """The layer perturbations carry the groups, so ‖ΔW‖² is the group-wise quantizer's error, and the
    sensitivity table keys (a sixth field 'groups@axis') survive a save/load."""
    from hao.proxy.build import compute_sensitivity
    from hao.proxy.sensitivity import SensitivityTable, perturbation_sq_norm
    from hao.quant.groupwise import grouped_weight_error

    sp = ViTSpace("vit-tiny", **TINY)
    c = sp.make({"depth": 2, "L0.heads": 1, "L0.qkv.w_bits": 4, "L0.qkv.groups": 1, "L0.o.groups": 0})
    p = {x.path: x for x in sp.perturbations(c)}
    q, o = p["blocks.0.attn.q"], p["blocks.0.attn.o"]
    assert (q.out_keep, q.w_groups, q.w_axis, o.in_keep, o.w_groups, o.w_axis) == (4, 1, 0, 4, 1, 1)
    w = torch.randn(8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # the kept slice (first head) is quantized on its own range; the removed rows count whole
    removed_q, removed_o = float(w[4:].pow(2).sum()), float(w[:, 4:].pow(2).sum())
    assert perturbation_sq_norm(w, q) == pytest.approx(removed_q + float(grouped_weight_error(w[:4], 4, 1, 0)))
    want_o = removed_o + float(grouped_weight_error(w[:, :4], o.w_bits, 1, 1))
    assert perturbation_sq_norm(w, o) == pytest.approx(want_o)
    c = sp.make({"depth": 2, "L0.heads": 2, "L0.qkv.w_bits": 4, "L0.qkv.groups": 1})
    q2 = {x.path: x for x in sp.perturbations(c)}["blocks.0.attn.q"]
    assert perturbation_sq_norm(w, q2) == pytest.approx(float(grouped_weight_error(w, 4, 2, 0)))
    assert sp.bit_config(c)["blocks.0.attn.q"] == {"w_bits": 4, "a_bits": 8, "w_groups": 2, "w_axis": 0}
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g))]
    table = compute_sensitivity(sp, sp.supernet(0), data, samples=4, seed=0)
    assert any(len(k) == 6 and k[-1] == "2@0" for k in table.entries)
    back = SensitivityTable.from_dict(table.to_dict())
    assert set(back.entries) == set(table.entries)
    assert back.omega(q) == pytest.approx(table.omega(q))


def test_patches_are_the_unfold_patches():
    """Patches are cut by reshape/permute (TVM's PyTorch frontend cannot import Tensor.unfold): the same tokens."""
    import torch

    from hao.space import get_space
    sp = get_space("vit-fmnist")
    net = sp.build(sp.largest())
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    ref = x.unfold(2, 4, 4).unfold(3, 4, 4).permute(0, 2, 3, 1, 4, 5).reshape(3, 49, 16)
    assert torch.equal(net.tokens(x), ref)
