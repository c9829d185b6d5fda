"""Patched CLIP blocks: equivalence with stock CLIP, token injection, per-head isolation."""
import pytest
import torch

from clipkit.surgery import TextTower, VisionTower, block_forward, run_blocks, run_injected
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


def test_encode_prompts_truncation_matches_encode_text(tiny_clip):
    from clipkit.text import encode_prompts

    prompts = ["a photo of a dog.", "red striped circle texture.", "a"]
    with torch.no_grad():
        ref = tiny_clip.encode_text(tokenize(prompts, tiny_clip.context_length))
    ref = ref / ref.norm(dim=-1, keepdim=True)
    assert torch.allclose(encode_prompts(tiny_clip, prompts, torch.device("cpu")), ref, atol=1e-5)
