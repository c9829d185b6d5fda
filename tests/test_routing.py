"""Head roles in every trainer whose prompts reach the vision attention (IVLP, MaPLe, PromptSRC, MMRL, MMRL++,
DeAR), and head-role masks in another codebase's stock ``nn.MultiheadAttention`` blocks."""
import json

import pytest
import torch
from golden import _setup, tiny_opts

from clipkit.surgery import attention

ROUTED = {"IVLP": "IVLP", "MaPLe": "MAPLE", "PromptSRC": "PROMPTSRC", "MMRL": "MMRL", "MMRLpp": "MMRLpp",
          "DeAR": "DEAR"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("routing")
    s = _setup(str(root))
    # every head of every layer of the tiny CLIP (6 layers x 4 heads) isolated
    heads = [{"layer": layer, "head": h, "role": "generalization", "concept": "style"}
             for layer in range(1, 7) for h in range(4)]
    doc = {"backbone": "tiny", "num_layers": 6, "num_heads": 4, "width": 256, "layers": list(range(1, 7)),
           "core_attributes": ["color", "shape", "texture", "object", "location"], "heads": heads}
    s["isolating"] = str(root / "isolating.json")
    with open(s["isolating"], "w") as f:
        json.dump(doc, f)
    return s


def model_for(setup, trainer, roles, mask="role", **kw):
    from dassl.engine import TRAINER_REGISTRY

    import trainers  # noqa: F401  (declares every trainer's config node)
    from clipkit.config import load_config
    from clipkit.loader import load_clip

    node = ROUTED[trainer]
    opts = dict(tiny_opts(trainer, setup), **{f"TRAINER.{node}.ROLES_FILE": roles, f"TRAINER.{node}.MASK": mask})
    opts.update(kw)
    cfg = load_config(overrides={"TRAINER.NAME": trainer, "MODEL.BACKBONE.PATH": setup["clip"], **opts})
    torch.manual_seed(0)
    model = TRAINER_REGISTRY.get(trainer).make_model(cfg, load_clip("ViT-B/16", setup["clip"]),
                                                     classnames=["a", "b", "c"])
    with torch.no_grad():  # prompts far from their initialisation, so that open heads would show them
        for p in model.learner.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model.eval()


def adapted_cls(model, image):
    """The adapted [CLS] feature, normalised, whatever the trainer calls it."""
    with torch.no_grad():
        if type(model).__name__ == "DeARModel":
            return model.image_features(image)["f_cls"]
        feats = model.image_features(image, model.learner())
        return feats["f_image"] if isinstance(feats, dict) else feats[0]


@pytest.mark.parametrize("trainer", list(ROUTED))
def test_isolating_every_prompted_layer_reproduces_frozen_clip(setup, trainer):
    image = torch.randn(3, 3, 32, 32)
    kw = {"TRAINER.DEAR.INJECT_LAYER": 3} if trainer == "DeAR" else {}  # as many injected layers as text layers
    isolated = model_for(setup, trainer, setup["isolating"], **kw)
    frozen = isolated.frozen_image_features(image)
    assert (adapted_cls(isolated, image) - frozen).abs().max() < 1e-5
    open_ = model_for(setup, trainer, setup["isolating"], mask="none", **kw)  # the same prompts, every head open
    assert (adapted_cls(open_, image) - frozen).abs().max() > 1e-3


@pytest.mark.parametrize("trainer", list(ROUTED))
def test_perturbed_prompts_leave_isolated_heads_unchanged(setup, trainer):
    """At a routed layer, the per-head outputs of isolated heads at the original tokens do not depend on the
    prompts; the open heads' do."""
    from head_roles import load_roles

    model = model_for(setup, trainer, setup["roles"])  # tiny roles: mixed, attribute and isolated heads
    roles = load_roles(setup["roles"])
    layer = roles.layers[-1]
    block_index = layer - 1
    offset = len(model.vision.blocks) - len(model.masks)  # masks start at the first block with prompts
    mask = model.masks[block_index - offset]
    n = model.vision.num_tokens
    k = mask.shape[-1] - n
    torch.manual_seed(1)
    x = torch.randn(2, n, model.vision.visual.transformer.width)
    block = model.vision.blocks[block_index]
    outs = []
    for scale in (1.0, -3.0):
        prompts = torch.randn(2, k, x.shape[-1], generator=torch.Generator().manual_seed(2)) * scale
        _, per_head = attention(block.attn, block.ln_1(torch.cat([x, prompts], 1)), mask, return_heads=True)
        outs.append(per_head[:, :, :n])  # [B, H, N, D] at the original tokens
    isolated = roles.isolated_heads(layer)
    if trainer != "DeAR":  # deep prompts stand for no attribute: attribute heads are open to them ("open")
        assert all(h not in isolated for h in roles.heads_with_role(layer, "attribute"))
    assert isolated, "the tiny roles file has isolated heads in every layer"
    for h in range(outs[0].shape[1]):
        same = torch.allclose(outs[0][:, h], outs[1][:, h], atol=1e-6)
        assert same == (h in isolated), (h, isolated)


@pytest.mark.parametrize("trainer", ["IVLP", "MMRL"])
def test_roles_and_mask_are_part_of_the_learner_identity(setup, trainer):
    from clipkit.prompted import LearnerMismatch

    routed = model_for(setup, trainer, setup["roles"])
    plain = model_for(setup, trainer, setup["roles"], mask="none")
    with pytest.raises(LearnerMismatch, match=rf"TRAINER.{ROUTED[trainer]}.MASK: 'role' in the checkpoint, 'none'"):
        plain.learner.load_state_dict(routed.learner.state_dict())
    other = model_for(setup, trainer, setup["isolating"])
    with pytest.raises(LearnerMismatch, match="roles:"):
        other.learner.load_state_dict(routed.learner.state_dict())


def test_roles_of_another_backbone_are_refused(setup):
    from head_roles import RolesMismatch, load_roles

    with pytest.raises(RolesMismatch, match=r"\(12, 12, 768\).*\(6, 4, 256\)"):
        model_for(setup, "MaPLe", load_roles("ViT-B/16").source)


def test_readme_example_on_a_stock_multihead_attention_block(vitb16_clip):
    """What a CoOp-family checkout does: role masks for its prompts, expanded batch-major to
    ``(batch*heads, L, L)`` for OpenAI's stock ``ResidualAttentionBlock`` (``nn.MultiheadAttention``)."""
    from clipkit.surgery import block_forward
    from head_roles import load_roles, role_masks

    roles = load_roles("ViT-B/16")
    block = vitb16_clip.visual.transformer.resblocks[9]  # layer 10
    n_orig, n_prompts, batch = 5, 2, 3
    # --- the README's lines ---
    masks = role_masks(roles, [10], n_orig, [None] * n_prompts, num_heads=12, attr_interaction="all")
    mask = masks[0]  # [heads, L, L] for layer 10
    attn_mask = mask.repeat(batch, 1, 1)  # [batch * heads, L, L], batch-major, as nn.MultiheadAttention wants
    # --- end ---
    torch.manual_seed(0)
    x = torch.randn(batch, n_orig + n_prompts, 768)
    block.attn_mask = attn_mask
    try:
        stock = block(x.permute(1, 0, 2)).permute(1, 0, 2)  # OpenAI's block is sequence-first
    finally:
        block.attn_mask = None
    ours = block_forward(block, x, mask)
    assert torch.allclose(stock, ours, atol=1e-4)
    # and the isolated heads really do not see the prompts: moving the prompts leaves them unchanged
    x2 = x.clone()
    x2[:, n_orig:] += 5.0
    _, a = attention(block.attn, block.ln_1(x), mask, return_heads=True)
    _, b = attention(block.attn, block.ln_1(x2), mask, return_heads=True)
    for h in roles.isolated_heads(10):
        assert torch.allclose(a[:, h, :n_orig], b[:, h, :n_orig], atol=1e-5)


def test_attribute_sets_of_other_sizes(setup):
    """K = 3 / 7 (the paper's Table 6): the chosen concepts get tokens, the other specialized heads are isolated."""
    from head_roles import attribute_set, load_roles

    roles = load_roles("ViT-B/16")
    assert attribute_set(roles, 5) == roles.core_attributes
    assert attribute_set(roles, 3) == ("texture", "object", "location")
    assert attribute_set(roles, 7) == roles.core_attributes + ("human", "text")
    k7 = roles.with_attributes(attribute_set(roles, 7))
    assert k7.heads_for_attribute(10, "human") == [4] and k7.heads_for_attribute(12, "text") == [11]
    k3 = roles.with_attributes(attribute_set(roles, 3))
    assert 1 in k3.isolated_heads(10)  # (10, 1) is a colour head: no colour token with K=3, so isolated
    k3_names = ["texture", "object", "location"]
    model = model_for(setup, "DeAR", setup["roles"], **{"TRAINER.DEAR.ATTRIBUTES": k3_names})
    assert model.learner.attribute_tokens.shape[1] == 3 and model.learner.attributes == tuple(k3_names)
    tiny = load_roles(setup["roles"])
    layer = tiny.layers[0]
    colour_heads = tiny.heads_for_attribute(layer, "color")
    mask = model.masks[0]  # the first injected layer
    n = model.vision.num_tokens
    for h in colour_heads:
        assert torch.isinf(mask[h, :n, n:]).all()  # the colour head sees no token at all


def test_ablation_script_runs_the_grid_and_prints_the_table(setup, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = dict(os.environ, DATA=setup["root"], OUTPUT=str(tmp_path), SHOTS="2", PYTHON=sys.executable,
               CLIP_OFFLINE="1", OPTS=f"MODEL.BACKBONE.PATH {setup['clip']} TRAINER.DEAR.ROLES_FILE {setup['roles']} "
                                      "INPUT.SIZE (32,32) DATALOADER.NUM_WORKERS 0 OPTIM.MAX_EPOCH 1 "
                                      "DATALOADER.TRAIN_X.BATCH_SIZE 2")
    cmd = ["bash", "scripts/ablations.sh", "dtd", "1", "--variants", "role", "k3", "decoupled"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line for line in out.stdout.splitlines() if line.startswith("| ")}
    for v in ("role", "k3", "decoupled"):
        assert "+-" in rows[v], rows
    from head_roles import attribute_set, load_roles

    k3 = ", ".join(attribute_set(load_roles(setup["roles"]), 3))
    assert f"attributes {k3})" in (
        tmp_path / "ablations/k3/base2new/train_base/dtd/shots_2/DeAR/dear/seed1/log.txt").read_text()
    assert "Inference: cls" in (tmp_path / "ablations/decoupled/base2new/test_new/dtd/shots_2/DeAR/dear/seed1/log.txt"
                                ).read_text()
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and again.stdout.count("Skip") == 5  # every finished run is skipped
