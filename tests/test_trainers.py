"""Every registered trainer on a tiny CLIP (CPU): one epoch, save / load / resume, the protocol scripts, and the
properties of each method that need no outside code."""
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT
from golden import TINY_OPTS, _setup, tiny_opts

TRAINED = [t for t in TINY_OPTS if t != "ZeroshotCLIP"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return _setup(str(tmp_path_factory.mktemp("trainers")))


def build(setup, out, trainer, **kw):
    from conftest import make_cfg
    from dassl.engine import build_trainer

    opts = {"DATASET.ROOT": setup["root"], "DATASET.NAME": "DescribableTextures", "SEED": 1, "TRAINER.NAME": trainer,
            "OUTPUT_DIR": str(out), "MODEL.BACKBONE.NAME": "ViT-B/16", "MODEL.BACKBONE.PATH": setup["clip"],
            "INPUT.SIZE": (32, 32), "DATALOADER.NUM_WORKERS": 0, "DATALOADER.TRAIN_X.BATCH_SIZE": 4,
            "OPTIM.NAME": "sgd", "OPTIM.LR": 0.01, "OPTIM.MAX_EPOCH": 1, "OPTIM.LR_SCHEDULER": "cosine",
            "DATASET.SUBSAMPLE_CLASSES": "base", "TRAIN.PRINT_FREQ": 100}
    opts.update(tiny_opts(trainer, setup))
    opts.update(kw)
    cfg = make_cfg(**opts)
    cfg.VERBOSE = False
    cfg.freeze()
    torch.manual_seed(0)
    return build_trainer(cfg)


@pytest.mark.parametrize("trainer", TRAINED)
def test_one_epoch_then_save_load_and_resume(setup, tmp_path, trainer):
    tr = build(setup, tmp_path, trainer)
    clip_before = {k: v.clone() for k, v in tr.model.clip.state_dict().items()}
    tr.train()
    acc = tr.test()
    assert all(torch.equal(clip_before[k], v) for k, v in tr.model.clip.state_dict().items())  # CLIP untouched
    ckpt = tmp_path / "prompt_learner" / "model.pth.tar-1"
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    learnable = {n for n, _ in tr.learner.named_parameters()}
    assert set(state) == learnable | {"identity"}  # only the learner and its identity, never CLIP
    fresh = build(setup, tmp_path / "eval", trainer)
    fresh.load_model(str(tmp_path), epoch=1)
    assert fresh.test() == pytest.approx(acc)
    longer = build(setup, tmp_path, trainer, **{"OPTIM.MAX_EPOCH": 2})
    longer.train()
    assert longer.start_epoch == 1 and (tmp_path / "prompt_learner" / "model.pth.tar-2").is_file()


def test_zeroshot_clip_evaluates_and_has_nothing_to_save(setup, tmp_path):
    tr = build(setup, tmp_path, "ZeroshotCLIP")
    assert tr.learner is None and tr.get_model_names() == []
    assert 0.0 <= tr.test() <= 100.0


@pytest.mark.parametrize("trainer", TRAINED + ["ZeroshotCLIP"])
def test_base2new_scripts_run_every_trainer(setup, tmp_path, trainer):
    opts = " ".join(f"{k} {str(v).replace(' ', '')}" if not isinstance(v, str) else f"{k} {v.replace(' ', '_')}"
                    for k, v in tiny_opts(trainer, setup).items())
    env = dict(os.environ, DATA=setup["root"], OUTPUT=str(tmp_path / "out"), SHOTS="2", PYTHON=sys.executable,
               CLIP_OFFLINE="1", OPTS=f"MODEL.BACKBONE.PATH {setup['clip']} INPUT.SIZE (32,32) "
                                      f"DATALOADER.NUM_WORKERS 0 OPTIM.MAX_EPOCH 1 DATALOADER.TRAIN_X.BATCH_SIZE 2 "
                                      f"DATALOADER.TEST.BATCH_SIZE 8 {opts}")
    for script in ("base2new_train.sh", "base2new_test.sh"):
        out = subprocess.run(["bash", f"scripts/{script}", "dtd", "1", trainer], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert "* accuracy" in out.stdout


def test_coop_initialised_from_a_photo_of_a_is_zero_shot_clip(setup, tmp_path):
    """CoOp's context initialised with 'a photo of a' is the zero-shot prompt: same logits at step 0."""
    coop = build(setup, tmp_path, "CoOp", **{"TRAINER.COOP.CTX_INIT": "a photo of a",
                                             "DATASET.PROMPT_TEMPLATE": "a photo of a {}."})
    zs = build(setup, tmp_path / "zs", "ZeroshotCLIP", **{"DATASET.PROMPT_TEMPLATE": "a photo of a {}."})
    image = torch.randn(5, 3, 32, 32)
    coop.set_model_mode("eval")
    zs.set_model_mode("eval")
    with torch.no_grad():
        assert torch.allclose(coop.model_inference(image), zs.model_inference(image), atol=1e-5)


def test_cocoop_with_a_silent_meta_net_is_coop(setup, tmp_path):
    cocoop = build(setup, tmp_path, "CoCoOp")
    coop = build(setup, tmp_path / "c", "CoOp", **{"TRAINER.COOP.N_CTX": 4})
    with torch.no_grad():
        net = cocoop.learner.meta_net
        net.linear2.weight.zero_()
        net.linear2.bias.zero_()
        coop.learner.ctx.copy_(cocoop.learner.ctx)
    image = torch.randn(3, 3, 32, 32)
    for t in (cocoop, coop):
        t.set_model_mode("eval")
    with torch.no_grad():
        assert torch.allclose(cocoop.model_inference(image), coop.model_inference(image), atol=1e-5)


@pytest.mark.parametrize("kw", [{}, {"TRAINER.COOP.CSC": True}, {"TRAINER.COOP.CLASS_TOKEN_POSITION": "middle"},
                                {"TRAINER.COOP.CLASS_TOKEN_POSITION": "front", "TRAINER.COOP.CSC": True}])
def test_coop_text_path_equals_stock_clip_at_77_tokens(setup, tmp_path, kw):
    """Cut prompts, the class-shared prefix run once and the context splice equal CLIP's own text encoder
    run on the official ``cat(prefix, ctx, suffix) + positional_embedding`` at 77 tokens."""
    from clipkit.prompts import context_prompts

    tr = build(setup, tmp_path, "CoOp", **kw)
    m = tr.model
    with torch.no_grad():
        m.learner.ctx.normal_(std=0.5)
        ours = m.text_features()
        p = context_prompts(m.classnames, m.n_ctx, 77, m.ctx_init, m.position, m.csc)
        ids = torch.nn.functional.pad(p.ids, (0, 77 - p.ids.shape[1]))
        x = m.clip.token_embedding(ids)
        ctx = m.learner.ctx if m.csc else m.learner.ctx.expand(len(m.classnames), -1, -1)
        idx = torch.nn.functional.pad(p.ctx_index, (0, 77 - p.ids.shape[1]), value=-1)
        x = torch.where((idx >= 0)[..., None], ctx[torch.arange(len(ids))[:, None], idx.clamp(min=0)], x)
        x = m.clip.transformer((x + m.clip.positional_embedding).permute(1, 0, 2)).permute(1, 0, 2)
        ref = m.clip.ln_final(x)[torch.arange(len(ids)), ids.argmax(-1)] @ m.clip.text_projection
    assert torch.allclose(ours, ref / ref.norm(dim=-1, keepdim=True), atol=1e-5)


def test_evaluation_encodes_the_class_prompts_once(setup, tmp_path, monkeypatch):
    """No trainer re-encodes its class prompts per test batch (the official repos do)."""
    tr = build(setup, tmp_path, "MaPLe", **{"DATALOADER.TEST.BATCH_SIZE": 1})
    calls = []
    original = type(tr.model).text_features
    monkeypatch.setattr(type(tr.model), "text_features", lambda self, p=None: calls.append(1) or original(self, p))
    tr.test()
    assert len(tr.test_loader) > 1 and len(calls) == 1
    tr.test()  # nothing changed: still cached
    assert len(calls) == 1
    with torch.no_grad():
        tr.learner.ctx.add_(0.1)  # the learner changed: recomputed once
    tr.test()
    assert len(calls) == 2


def test_learner_identity_names_the_key_that_differs(setup, tmp_path):
    from clipkit.prompted import LearnerMismatch

    build(setup, tmp_path, "IVLP").train()
    other = build(setup, tmp_path / "o", "IVLP", **{"TRAINER.IVLP.N_CTX_VISION": 3})
    with pytest.raises(LearnerMismatch, match=r"TRAINER.IVLP.N_CTX_VISION: 2 in the checkpoint, 3 here"):
        other.load_model(str(tmp_path), epoch=1)
    with pytest.raises(LearnerMismatch, match="trainer: 'IVLP' in the checkpoint, 'MaPLe' here"):
        build(setup, tmp_path / "m", "MaPLe").load_model(str(tmp_path), epoch=1)


def test_official_prec_fp16_is_accepted_as_amp(setup, tmp_path):
    tr = build(setup, tmp_path, "MaPLe", **{"TRAINER.MAPLE.PREC": "fp16"})
    assert tr.settings.PREC == "amp" and tr.step.precision == "fp32"  # amp needs CUDA; CPU runs fp32


def test_prompt_depth_past_the_encoder_is_a_clear_error(setup, tmp_path):
    with pytest.raises(ValueError, match="TRAINER.IVLP.PROMPT_DEPTH_TEXT=9 .* 4 text layers"):
        build(setup, tmp_path, "IVLP", **{"TRAINER.IVLP.PROMPT_DEPTH_TEXT": 9})


def test_promptsrc_deploys_the_gaussian_aggregate(setup, tmp_path):
    """After the last epoch the learner holds sum_e w_e * learner_e (what each epoch ended with)."""
    from trainers.promptsrc import gpa_weights

    tr = build(setup, tmp_path, "PromptSRC", **{"OPTIM.MAX_EPOCH": 3})
    snapshots = []
    original = tr.end_of_epoch

    def spy():
        snapshots.append({n: p.detach().clone() for n, p in tr.learner.named_parameters()})
        original()

    tr.end_of_epoch = spy
    tr.train()
    w = gpa_weights(3, 2.0, 1.0)
    for n, p in tr.learner.named_parameters():
        expected = snapshots[0][n] * w[0] + snapshots[1][n] * w[1] + snapshots[2][n] * w[2]
        assert torch.allclose(p, expected, atol=1e-7)


def test_mmrl_inference_follows_the_task(setup, tmp_path):
    def mode(**kw):
        return build(setup, tmp_path, "MMRL", **kw).inference_mode()

    assert mode() == "fusion" and mode(**{"DATASET.SUBSAMPLE_CLASSES": "new"}) == "cls"
    assert mode(**{"TASK": "CD", "DATASET.SUBSAMPLE_CLASSES": "all"}) == "cls"
    assert mode(**{"TASK": "FS", "DATASET.SUBSAMPLE_CLASSES": "all"}) == "fusion"


def test_resnet_backbone_runs_coop_and_cocoop(tmp_path):
    """CoOp and CoCoOp also run on ResNet CLIPs (as in their repos): a tiny ModifiedResNet CLIP."""
    from clipkit.loader import clip_module
    from clipkit.prompted import LearnerMismatch  # noqa: F401
    from trainers.cocoop import CoCoOpModel, CoCoOpSettings
    from trainers.coop import CoOpModel, CoOpSettings

    torch.manual_seed(0)
    clip = clip_module().model.CLIP(64, 64, (1, 1, 1, 1), 64, None, 77, 49408, 128, 2, 2).float().eval()
    for p in clip.parameters():
        p.requires_grad_(False)
    names = ["red circle", "blue square", "green star"]
    for model in (CoOpModel(clip, CoOpSettings(N_CTX=4), names), CoCoOpModel(clip, CoCoOpSettings(N_CTX=4))):
        model.set_classes(names, "{}")
        out = model(torch.randn(2, 3, 64, 64))
        torch.nn.functional.cross_entropy(out["logits"], torch.tensor([0, 2])).backward()
        assert out["logits"].shape == (2, 3)
        assert all(p.grad is not None for p in model.learner.parameters())


def test_input_size_that_does_not_fit_the_clip_is_a_config_error(setup, tmp_path):
    from clipkit.config import ConfigError

    match = r"INPUT.SIZE \(224, 224\) does not match .* \(32 px\): set INPUT.SIZE \(32, 32\)"
    with pytest.raises(ConfigError, match=match):
        build(setup, tmp_path, "CoOp", **{"INPUT.SIZE": (224, 224)})


@pytest.mark.parametrize("trainer", TRAINED)
def test_a_bf16_autocast_step_runs(setup, tmp_path, trainer):
    """Mixed precision reaches every attention path (masks and keys cast to the query's dtype): one bf16 step."""
    node = {"CoOp": "COOP", "CoCoOp": "COCOOP", "IVLP": "IVLP", "MaPLe": "MAPLE", "PromptSRC": "PROMPTSRC",
            "MMRL": "MMRL", "MMRLpp": "MMRLpp", "DeAR": "DEAR"}[trainer]
    tr = build(setup, tmp_path, trainer, **{f"TRAINER.{node}.PREC": "bf16"})
    assert tr.step.precision == "bf16"
    tr.set_model_mode("train")
    tr.num_batches, tr.batch_idx = 10, 0
    batch = {"img": torch.randn(2, 3, 32, 32), "label": torch.tensor([0, 1])}
    summary = tr.forward_backward(batch)
    assert torch.isfinite(torch.tensor(summary["loss"]))
    tr.set_model_mode("eval")
    with torch.no_grad():
        assert tr.model_inference(batch["img"]).dtype == torch.float32
