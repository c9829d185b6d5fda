"""Patched CLIP blocks: equivalence with stock CLIP, token injection, per-head isolation."""
import pytest
import torch

from clipkit.surgery import (
    TextTower,
    VisionTower,
    attention_lse,
    block_forward,
    run_blocks,
    run_injected,
    shared_first_block,
)
from clipkit.text import tokenize
from head_roles import ablate, load_roles, role_mask


def _encoders_match(model, res):
    torch.manual_seed(0)
    img = torch.randn(2, 3, res, res)
    text = tokenize(["a photo of a dog.", "red striped circle texture."], model.context_length)
    with torch.no_grad():
        assert torch.allclose(VisionTower(model)(img), model.encode_image(img), atol=1e-5)
        assert torch.allclose(TextTower(model)(text), model.encode_text(text), atol=1e-5)


def test_patched_equals_stock_tiny(tiny_clip):
    _encoders_match(tiny_clip, 32)


def test_patched_equals_stock_vit_b16_shape(vitb16_clip):
    _encoders_match(vitb16_clip, 32)


def _deep(model, img, tokens, masks, start, beta=0.9):
    tower = VisionTower(model)
    x = tower.prefix(img, start)
    out = run_injected(tower.blocks[start:], x, tokens, insert_at=x.shape[1], beta=beta, masks=masks)
    return out, tower


@pytest.mark.parametrize("fixture", ["tiny_clip", "vitb16_clip"])
def test_tokens_with_open_mask_change_cls_and_isolated_equal_stock(request, fixture):
    model = request.getfixturevalue(fixture)
    layers = model.visual.transformer.layers
    start = layers - 4
    d = model.visual.transformer.width
    torch.manual_seed(1)
    img = torch.randn(3, 3, 32, 32)
    tokens = [torch.randn(5, d) for _ in range(4)]
    with torch.no_grad():
        stock = model.encode_image(img)
        out, tower = _deep(model, img, tokens, None, start)
        assert not torch.allclose(tower.project(out.x[:, 0]), stock, atol=1e-4)
        n_orig = tower.num_tokens
        heads = model.visual.transformer.resblocks[0].attn.num_heads
        iso = torch.full((heads, n_orig + 5, n_orig + 5), float("-inf"))
        iso[:, :n_orig, :n_orig] = 0
        iso[:, range(n_orig, n_orig + 5), range(n_orig, n_orig + 5)] = 0
        out, tower = _deep(model, img, tokens, iso, start)
        # equal up to summation order: the attention kernels see a longer (masked) sequence
        assert (tower.project(out.x[:, 0]) - stock).abs().max() < 1e-5
        assert out.tokens.shape == (3, 5, d)


def test_per_head_isolation_with_batch(vitb16_clip):
    """Perturbing the attribute tokens leaves generalization heads' outputs on original tokens unchanged
    and changes the routed attribute heads, for every image of a batch (catches batch/head mix-ups)."""
    roles = load_roles("ViT-B/16")
    model = vitb16_clip
    block = model.visual.transformer.resblocks[9]  # layer 10
    tower = VisionTower(model)
    torch.manual_seed(2)
    img = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        x = tower.prefix(img, 9)  # [4, 5, 768]
        n_orig = x.shape[1]
        mask = role_mask(roles.layer(10), roles.core_attributes, n_orig)
        tokens = torch.randn(4, 5, 768)  # per-image tokens, so the batch dimension matters
        perturbed = tokens.clone()
        perturbed[2] += 3.0 * torch.randn(5, 768)  # only image 2 changes
        _, ha = block_forward(block, torch.cat([x, tokens], 1), mask, return_heads=True)
        _, hb = block_forward(block, torch.cat([x, perturbed], 1), mask, return_heads=True)
    diff = (ha - hb).abs().amax(dim=-1)[:, :, :n_orig]  # [B, H, n_orig]
    gen = roles.heads_with_role(10, "generalization") + roles.heads_with_role(10, "other_specialized")
    routed = roles.heads_for_attribute(10, "color") + roles.heads_for_attribute(10, "object")
    assert diff[:, gen].max() == 0
    assert (diff[2, routed].amax(-1) > 1e-4).all()
    assert diff[[0, 1, 3]].max() == 0  # other images untouched in every head


def test_masks_broadcast_like_explicit_batch_heads(tiny_clip):
    block = tiny_clip.visual.transformer.resblocks[0]
    torch.manual_seed(3)
    x = torch.randn(3, 7, 256)
    mask = torch.zeros(4, 7, 7)
    mask[0, :, 3:] = float("-inf")
    with torch.no_grad():
        a = block_forward(block, x, mask)
        b = block_forward(block, x, mask.unsqueeze(0).expand(3, -1, -1, -1))
        # the same computation through nn.MultiheadAttention with its (batch*heads) batch-major 3-D mask
        h = block.ln_1(x).transpose(0, 1)
        mha = block.attn(h, h, h, need_weights=False, attn_mask=mask.repeat(3, 1, 1))[0].transpose(0, 1)
        ref = x + mha
        ref = ref + block.mlp(block.ln_2(ref))
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a, ref, atol=1e-5)


def test_text_injection_shifts_eot_and_keeps_weights_shared(tiny_clip):
    model = tiny_clip
    text = tokenize(["a photo of a cat.", "red circle."], model.context_length)
    tower = TextTower(model)
    assert tower.token_embedding is model.token_embedding  # shared, not copied
    with torch.no_grad():
        x = tower.prefix(text, 2)
        zero_beta1 = [torch.zeros(3, 128) for _ in range(2)]
        feats = tower.deep_with_tokens(x, text, 2, zero_beta1, beta=0.9)
        assert feats.shape == (2, model.text_projection.shape[1])
        assert not torch.allclose(feats, model.encode_text(text), atol=1e-4)
        # the start-of-text token is causal: it never sees the inserted tokens
        out = run_injected(tower.blocks[2:], x, zero_beta1, insert_at=1, beta=0.9,
                           masks=torch.full((80, 80), float("-inf")).triu_(1))
        ref = run_blocks(tower.blocks[2:], x[:, :1])
        assert torch.allclose(out.x[:, 0], ref[:, 0], atol=1e-5)


def test_random_shuffle_mask_differs(vitb16_clip):
    roles = load_roles("ViT-B/16")
    a = role_mask(roles.layer(9), roles.core_attributes, 5)
    b = role_mask(ablate(roles, "random_shuffle", 0).layer(9), roles.core_attributes, 5)
    assert not torch.equal(a, b)


def test_last_block_rows_only_is_exact(vitb16_clip):
    roles = load_roles("ViT-B/16")
    tower = VisionTower(vitb16_clip)
    torch.manual_seed(4)
    img = torch.randn(2, 3, 32, 32)
    tokens = [torch.randn(5, 768) for _ in range(4)]
    with torch.no_grad():
        x = tower.prefix(img, 8)
        n = x.shape[1]
        masks = [role_mask(roles.layer(layer), roles.core_attributes, n) for layer in roles.layers]
        full = run_injected(tower.blocks[8:], x, tokens, n, 0.9, masks)
        kept = run_injected(tower.blocks[8:], x, tokens, n, 0.9, masks, keep_first=True)
        assert kept.x.shape == (2, 6, 768)
        assert torch.allclose(kept.x[:, 0], full.x[:, 0], atol=1e-5)
        assert torch.allclose(kept.tokens, full.tokens, atol=1e-5)
        cls_only = run_blocks(tower.blocks[8:], x, last_rows=[0])
        assert torch.allclose(cls_only[:, 0], run_blocks(tower.blocks[8:], x)[:, 0], atol=1e-5)


@pytest.mark.parametrize("keep_first,n_blocks", [(False, 4), (True, 4), (True, 1)])
def test_shared_first_block_equals_separate_runs(vitb16_clip, keep_first, n_blocks):
    """Adapted + frozen paths sharing layer J's work on the original tokens give the outputs and the
    token gradients of the two separate runs."""
    roles = load_roles("ViT-B/16")
    tower = VisionTower(vitb16_clip)
    torch.manual_seed(5)
    img = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        x = tower.prefix(img, 12 - n_blocks)
    n = x.shape[1]
    layers = roles.layers[-n_blocks:]
    masks = [role_mask(roles.layer(layer), roles.core_attributes, n) for layer in layers]
    tokens = [torch.randn(5, 768, requires_grad=True) for _ in layers]
    blocks = tower.blocks[12 - n_blocks:]
    sep = run_injected(blocks, x, tokens, n, 0.9, masks, keep_first=keep_first)
    shared = run_injected(blocks, x, tokens, n, 0.9, masks, keep_first=keep_first, with_stock=True)
    assert shared.x.shape == sep.x.shape and shared.token_slice == sep.token_slice
    assert (shared.x - sep.x).abs().max() < 1e-5
    stock = run_blocks(blocks, x)
    assert not shared.frozen.requires_grad
    assert shared.frozen.shape == ((3, 1, 768) if keep_first else stock.shape)
    assert (shared.frozen[:, 0] - stock[:, 0]).abs().max() < 1e-5
    g_sep = torch.autograd.grad(sep.x.square().sum(), tokens)
    g_shared = torch.autograd.grad(shared.x.square().sum(), tokens)
    for a, b in zip(g_sep, g_shared):
        assert a.abs().max() > 0
        assert (a - b).abs().max() <= 1e-4 * a.abs().max()


def test_attention_lse_both_paths_match_reference():
    torch.manual_seed(6)
    q, k, v = (torch.randn(2, 3, 7, 8) for _ in range(3))
    scores = q @ k.transpose(-1, -2) / 8 ** 0.5
    ref_out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    with torch.no_grad():  # CPU: PyTorch's fused kernel
        out, lse = attention_lse(q, k, v)
    assert torch.allclose(out, ref_out, atol=1e-6) and torch.allclose(lse[..., 0], scores.logsumexp(-1), atol=1e-5)
    out, lse = attention_lse(q, k, v)  # grad enabled: the materialised path
    assert torch.allclose(out, ref_out, atol=1e-6) and torch.allclose(lse[..., 0], scores.logsumexp(-1), atol=1e-5)


def test_shared_first_block_refuses_what_it_cannot_share(vitb16_clip):
    tower = VisionTower(vitb16_clip)
    x = torch.randn(2, 5, 768)
    tokens = torch.randn(2, 2, 768)
    closed = torch.zeros(7, 7)
    closed[0, 1] = float("-inf")  # blocks an original token from another
    with pytest.raises(ValueError, match="N x N block open"):
        shared_first_block(tower.blocks[8], x, tokens, closed)
    with pytest.raises(ValueError, match="constant"):
        shared_first_block(tower.blocks[8], x.clone().requires_grad_(True), tokens, None)
    with pytest.raises(ValueError, match="insert_at"):
        run_injected(tower.blocks[8:], x, [tokens[0]] * 4, 1, 0.9, with_stock=True)


def test_encode_prompts_truncation_matches_encode_text(tiny_clip):
    from clipkit.text import encode_prompts

    prompts = ["a photo of a dog.", "red striped circle texture.", "a"]
    with torch.no_grad():
        ref = tiny_clip.encode_text(tokenize(prompts, tiny_clip.context_length))
    ref = ref / ref.norm(dim=-1, keepdim=True)
    assert torch.allclose(encode_prompts(tiny_clip, prompts, torch.device("cpu")), ref, atol=1e-5)
