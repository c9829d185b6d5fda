"""The CLIP loader: head counts stored in the weights file, OpenAI's files unchanged, clear errors on bad tensors."""
import copy
import warnings

import pytest
import torch

from clipkit.loader import (
    HEAD_KEYS,
    ClipWeightsInvalid,
    build_clip_model,
    clip_module,
    describe_backbone,
    load_clip,
    read_state_dict,
)
from clipkit.tiny import build_clip, save_clip

SMALL = dict(embed_dim=32, vision_layers=2, vision_width=128, transformer_width=64, transformer_layers=2,
             context_length=16)


def _same_outputs(a, b) -> None:
    img = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    txt = torch.randint(1, 400, (2, a.context_length), generator=torch.Generator().manual_seed(1))
    txt[:, -1] = 49407
    with torch.no_grad():
        assert torch.equal(a.encode_image(img), b.encode_image(img))
        assert torch.equal(a.encode_text(txt), b.encode_text(txt))


def test_head_counts_round_trip_through_a_plain_state_dict(tmp_path):
    model = build_clip(vision_heads=8, text_heads=4, **SMALL)
    assert describe_backbone(model)["heads"] == 8 and describe_backbone(model)["text_heads"] == 4
    path = save_clip(model, str(tmp_path / "m.pt"))
    raw = torch.load(path, weights_only=True)  # a plain state dict: tensors only
    assert int(raw[HEAD_KEYS["vision_heads"]]) == 8 and int(raw[HEAD_KEYS["text_heads"]]) == 4
    loaded = load_clip("unused", path)
    info = describe_backbone(loaded)
    assert (info["heads"], info["text_heads"], info["width"], info["layers"]) == (8, 4, 128, 2)
    _same_outputs(model, loaded)
    # the head count changes the computation, not the weights
    four = build_clip(vision_heads=4, text_heads=4, **SMALL)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), four.parameters()))
    with torch.no_grad():
        img = torch.randn(1, 3, 32, 32)
        assert not torch.allclose(model.encode_image(img), four.encode_image(img))


def test_file_without_head_entries_loads_as_openai_build_model_builds_it(tmp_path):
    """A state dict with no reserved entries (OpenAI's files, older tiny files): 64-dim heads, as before."""
    model = build_clip(**SMALL)  # width 128 -> 2 vision heads, width 64 -> 1 text head
    sd = model.state_dict()
    ours = build_clip_model(dict(sd))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = clip_module().model.build_model(dict(sd)).float()
    theirs.load_state_dict(sd)  # what load_clip did before: fp16 build, then the fp32 weights again
    assert describe_backbone(ours) == describe_backbone(theirs)
    assert describe_backbone(ours)["heads"] == 2 and describe_backbone(ours)["text_heads"] == 1
    _same_outputs(ours.eval(), theirs.eval())


def test_torchscript_archive_loads(tmp_path):
    """OpenAI's files are TorchScript archives carrying three non-tensor extras; they load as before."""
    model = build_clip(**SMALL)
    img = torch.randn(1, 3, 32, 32)
    txt = torch.zeros(1, model.context_length, dtype=torch.long)
    txt[0, :3] = torch.tensor([49406, 320, 49407])
    archived = copy.deepcopy(model)
    archived.register_buffer("input_resolution", torch.tensor(32))  # as OpenAI's archives carry it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(archived, (img, txt), check_trace=False)
    path = str(tmp_path / "archive.pt")
    torch.jit.save(traced, path)
    assert "input_resolution" in read_state_dict(path)
    _same_outputs(model, load_clip("unused", path))


@pytest.mark.parametrize("edit, expected", [
    (lambda sd: sd.pop("visual.ln_post.weight"), "missing 'visual.ln_post.weight' (expected shape (128,))"),
    (lambda sd: sd.__setitem__("visual.transformer.resblocks.1.mlp.c_fc.weight", torch.zeros(500, 128)),
     "'visual.transformer.resblocks.1.mlp.c_fc.weight' has shape (500, 128), expected (512, 128)"),
    (lambda sd: sd.__setitem__("visual.proj", torch.zeros(128, 48)), "'visual.proj' has shape (128, 48), expected"),
    (lambda sd: sd.__setitem__("transformer.resblocks.0.extra", torch.zeros(3)), "unexpected tensor"),
    (lambda sd: sd.pop("ln_final.weight"), "'ln_final.weight' ([text width]) is missing"),
    (lambda sd: sd.__setitem__("visual.positional_embedding", torch.zeros(18, 128)), "1 + grid * grid"),
    (lambda sd: sd.__setitem__(HEAD_KEYS["vision_heads"], torch.tensor(7)), "7 heads do not divide the width 128"),
    (lambda sd: sd.__setitem__(HEAD_KEYS["vision_heads"], torch.tensor(0.5)), "one-element integer tensor"),
    (lambda sd: sd.__setitem__("clipkit.colour", torch.tensor(1)), "unknown reserved entry 'clipkit.colour'"),
])
def test_bad_tensor_fails_naming_file_tensor_and_expectation(tmp_path, edit, expected):
    model = build_clip(vision_heads=8, text_heads=4, **SMALL)
    path = str(tmp_path / "bad.pt")
    sd = torch.load(save_clip(model, path), weights_only=True)
    edit(sd)
    torch.save(sd, path)
    with pytest.raises(ClipWeightsInvalid) as e:
        load_clip("unused", path)
    msg = str(e.value)
    assert path in msg and expected in msg, msg
    assert "size mismatch" not in msg


def test_build_clip_refuses_heads_that_do_not_divide_the_width():
    with pytest.raises(ClipWeightsInvalid, match="vision_heads: 5 heads do not divide the width 128"):
        build_clip(vision_heads=5, **SMALL)


def test_row_sparse_entries_load_dense(tmp_path):
    """A token embedding stored with its non-zero rows only (the world CLIP's) loads as the dense tensor."""
    from clipkit.loader import clip_state_dict

    model = build_clip(vision_heads=8, **SMALL)
    with torch.no_grad():
        keep = torch.zeros(model.token_embedding.weight.shape[0], dtype=torch.bool)
        keep[[5, 320, 49406, 49407]] = True
        model.token_embedding.weight[~keep] = 0
    sd = clip_state_dict(model, sparse_rows=("token_embedding.weight",))
    assert sd["token_embedding.weight"].is_sparse and sd["token_embedding.weight"].values().shape == (4, 64)
    path = str(tmp_path / "sparse.pt")
    torch.save(sd, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no sparse-tensor warnings leak out of the loader
        loaded = load_clip("unused", path)
    _same_outputs(model, loaded)
