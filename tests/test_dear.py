"""The DeAR trainer on tiny CLIPs (CPU): trainable set, equivalences, losses, inference modes, checkpoints."""
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, make_cfg

from clipkit.prompted import LearnerMismatch
from head_roles import RolesMismatch, load_roles
from tools.fake_data import make_dataset, write_tiny_roles


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_clip_file):
    root = tmp_path_factory.mktemp("dear")
    make_dataset(str(root / "data"), "DescribableTextures", n_classes=6)
    roles = write_tiny_roles(str(root / "roles.json"))
    return {"root": root, "clip": tiny_clip_file, "roles": roles}


def dear_cfg(setup, out, **kw):
    opts = {
        "DATASET.ROOT": str(setup["root"] / "data"), "DATASET.NAME": "DescribableTextures", "SEED": 1,
        "TRAINER.NAME": "DeAR", "OUTPUT_DIR": str(out), "MODEL.BACKBONE.NAME": "ViT-B/16",
        "MODEL.BACKBONE.PATH": setup["clip"], "TRAINER.DEAR.ROLES_FILE": setup["roles"],
        "INPUT.SIZE": (32, 32), "INPUT.INTERPOLATION": "bicubic", "INPUT.TRANSFORMS": ("random_flip", "normalize"),
        "DATALOADER.NUM_WORKERS": 0, "DATALOADER.TRAIN_X.BATCH_SIZE": 6, "OPTIM.NAME": "adamw",
        "OPTIM.LR": 0.01, "OPTIM.MAX_EPOCH": 2, "OPTIM.LR_SCHEDULER": "cosine", "TRAIN.PRINT_FREQ": 100,
        "DATASET.SUBSAMPLE_CLASSES": "base",
    }
    opts.update(kw)
    cfg = make_cfg(**opts)
    cfg.VERBOSE = False
    cfg.freeze()
    return cfg


def build(setup, out, **kw):
    from dassl.engine import build_trainer

    torch.manual_seed(0)
    return build_trainer(dear_cfg(setup, out, **kw))


def test_only_learner_is_trainable_and_clip_unchanged(setup, tmp_path):
    tr = build(setup, tmp_path)
    trainable = sorted(n for n, p in tr.model.named_parameters() if p.requires_grad)
    assert trainable == ["learner.attribute_proj", "learner.attribute_tokens", "learner.fusion_weights",
                         "learner.text_tokens"]
    assert tr.model.learner.attribute_tokens.shape == (4, 5, 256)  # 4 injected layers, K=5, width
    before = {k: v.clone() for k, v in tr.model.clip.state_dict().items()}
    tr.train()
    after = tr.model.clip.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(tr.model.learner.attribute_tokens, torch.zeros(1))


def test_isolated_cls_equals_frozen_clip(setup, tmp_path):
    tr = build(setup, tmp_path, **{"TRAINER.DEAR.MASK": "isolate_all"})
    img = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        feats = tr.model.image_features(img, with_frozen=True)
        stock = tr.model.clip.encode_image(img)
    stock = stock / stock.norm(dim=-1, keepdim=True)
    assert (feats["f_cls"] - stock).abs().max() < 1e-5
    assert (feats["f_cls"] - feats["f_frozen"]).abs().max() < 1e-5
    # with the role mask, mixed and attribute heads let the tokens in: f_cls moves
    tr2 = build(setup, tmp_path / "b")
    with torch.no_grad():
        f2 = tr2.model.image_features(img)
    assert (f2["f_cls"] - stock).abs().max() > 1e-4


def test_fusion_alpha_and_loss(setup, tmp_path):
    tr = build(setup, tmp_path, **{"TRAINER.DEAR.FUSION_INIT_CLS": 0.6})
    alpha = tr.model.learner.alpha
    assert alpha.sum().item() == pytest.approx(1.0)
    assert alpha[0].item() == pytest.approx(0.6) and torch.allclose(alpha[1:], torch.full((5,), 0.08))
    img = torch.randn(2, 3, 32, 32)
    out = tr.model(img)
    manual = alpha[0] * out["logits_cls"] + (alpha[1:, None, None] * out["logits_attr"].transpose(0, 1)).sum(0)
    assert torch.allclose(out["logits"], manual, atol=1e-5)
    # L_fusion = -log(alpha_cls) alone pushes alpha_cls up
    opt = torch.optim.SGD([tr.model.learner.fusion_weights], lr=1.0)
    loss = -torch.log(tr.model.learner.alpha[0])
    assert loss.item() == pytest.approx(-torch.log(torch.tensor(0.6)).item(), rel=1e-5)
    loss.backward()
    opt.step()
    assert tr.model.learner.alpha[0].item() > 0.6


def test_inference_modes(setup, tmp_path):
    tr = build(setup, tmp_path)
    with torch.no_grad():
        tr.model.learner.fusion_weights.copy_(torch.tensor([0.0, 3.0, 0.0, 0.0, 0.0, 0.0]))
    img = torch.randn(4, 3, 32, 32)
    tr.model.eval()
    fused, cls = tr.model.predict(img, "fusion"), tr.model.predict(img, "cls")
    assert not torch.allclose(fused, cls)
    out = tr.model(img)
    assert torch.allclose(cls, out["logits_cls"]) and torch.allclose(fused, out["logits"])
    # decoupled: fusion on base classes, [CLS] on new ones
    base = build(setup, tmp_path / "b", **{"TRAINER.DEAR.INFERENCE": "decoupled"})
    new = build(setup, tmp_path / "n", **{"TRAINER.DEAR.INFERENCE": "decoupled", "DATASET.SUBSAMPLE_CLASSES": "new"})
    assert base.inference_mode() == "fusion" and new.inference_mode() == "cls"
    assert build(setup, tmp_path / "c", **{"TRAINER.DEAR.INFERENCE": "cls"}).inference_mode() == "cls"


def test_training_lowers_loss_and_raises_accuracy(setup, tmp_path):
    tr = build(setup, tmp_path, **{"OPTIM.MAX_EPOCH": 30, "OPTIM.LR": 0.01})
    tr.before_train()
    history = []
    for tr.epoch in range(tr.max_epoch):
        tr.set_model_mode("train")
        tr.num_batches = len(tr.train_loader_x)
        for tr.batch_idx, batch in enumerate(tr.train_loader_x):
            history.append(tr.forward_backward(batch))
    first, last = history[:2], history[-2:]
    mean = lambda rows, k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
    assert mean(last, "loss_ce") < 0.3 * mean(first, "loss_ce")
    assert mean(last, "acc") > mean(first, "acc")


def test_save_load_reproduces_accuracy_and_refuses_other_roles(setup, tmp_path):
    tr = build(setup, tmp_path, **{"OPTIM.MAX_EPOCH": 3})
    tr.train()
    acc = tr.test()
    assert (tmp_path / "prompt_learner" / "model.pth.tar-3").is_file()
    saved = torch.load(tmp_path / "prompt_learner" / "model.pth.tar-3", weights_only=False)["state_dict"]
    assert not any(k.startswith("clip") for k in saved)  # only trainable state (+ roles identity)
    assert sum(v.numel() for v in saved.values()) < 60_000
    fresh = build(setup, tmp_path / "eval")
    fresh.load_model(str(tmp_path), epoch=3)
    assert fresh.test() == pytest.approx(acc)
    other = build(setup, tmp_path / "other", **{"TRAINER.DEAR.MASK": "random_shuffle"})
    with pytest.raises(LearnerMismatch, match=r"TRAINER.DEAR.MASK: 'role' in the checkpoint, 'random_shuffle' here"):
        other.load_model(str(tmp_path), epoch=3)
    with pytest.raises(FileNotFoundError, match="--load-epoch"):
        fresh.load_model(str(tmp_path), epoch=7)


def test_roles_for_another_backbone_are_refused(setup, tmp_path):
    with pytest.raises(RolesMismatch, match=r"\(12, 12, 768\).*\(6, 4, 256\)"):
        build(setup, tmp_path, **{"TRAINER.DEAR.ROLES_FILE": load_roles("ViT-B/16").source})


def test_check_cfg_lists_allowed_values(setup, tmp_path):
    with pytest.raises(ValueError, match=r"\['fusion', 'decoupled', 'cls'\]"):
        build(setup, tmp_path, **{"TRAINER.DEAR.INFERENCE": "ensemble"})
    with pytest.raises(ValueError, match="generalization_only"):
        build(setup, tmp_path, **{"TRAINER.DEAR.MASK": "heads"})


def test_base2new_scripts_and_parser_end_to_end(setup, tmp_path):
    env = dict(os.environ, DATA=str(setup["root"] / "data"), OUTPUT=str(tmp_path / "output"), SHOTS="2",
               PYTHON=sys.executable, CLIP_OFFLINE="1",
               OPTS=f"MODEL.BACKBONE.PATH {setup['clip']} TRAINER.DEAR.ROLES_FILE {setup['roles']} "
                    "INPUT.SIZE (32,32) DATALOADER.NUM_WORKERS 0 OPTIM.MAX_EPOCH 2 DATALOADER.TRAIN_X.BATCH_SIZE 4")

    def sh(*args):
        out = subprocess.run(["bash", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
        return out.stdout

    for trainer in ("DeAR", "ZeroshotCLIP"):
        sh("scripts/base2new_train.sh", "dtd", "1", trainer)
        sh("scripts/base2new_test.sh", "dtd", "1", trainer)
    assert "Skip" in sh("scripts/base2new_train.sh", "dtd", "1")
    new_log = tmp_path / "output/base2new/test_new/dtd/shots_2/DeAR/dear/seed1/log.txt"
    assert "model.pth.tar-2" in new_log.read_text()  # evaluated the base-trained weights
    table = subprocess.run([sys.executable, "parse_test_res.py", str(tmp_path / "output/base2new"), "--table",
                            "--csv", str(tmp_path / "r.csv")], cwd=ROOT, capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    assert "| DeAR (dear) | dtd |" in table.stdout and "| ZeroshotCLIP (zsclip) | dtd |" in table.stdout
    assert (tmp_path / "r.csv").read_text().startswith("Method,Dataset,Base,Novel,HM")


def test_text_path_is_exact(setup, tmp_path):
    """The cut prompts with the class-shared prefix computed once give the full 77-token text features."""
    from clipkit.prompts import template_prompts, tokenize
    from clipkit.surgery import causal_mask, run_blocks

    tr = build(setup, tmp_path)
    model = tr.model
    assert model.text_s.shape[1] + model.text_p.shape[1] < model.clip.context_length
    assert model.text_p.shape[1] == 2  # start-of-text and "class", the first word of every name, are shared
    with torch.no_grad():
        model.learner.text_tokens.normal_()
        ours = model.text_features()
        full_ids = tokenize(list(template_prompts(model.classnames, model.template, 77).texts), 77)
        x = model.text.embed(full_ids)
        x = run_blocks(model.text.blocks[:model.text_start], x, causal_mask(x.shape[1]))
        full = model.text.deep_with_tokens(x, full_ids, model.text_start, list(model.learner.text_tokens), 0.9)
    assert torch.allclose(ours, torch.nn.functional.normalize(full, dim=-1), atol=1e-5)


def test_resume_from_checkpoint_with_warmup_scheduler(setup, tmp_path):
    """Checkpoints hold plain data only (loadable with weights_only=True) and resume where they stopped."""
    opts = {"OPTIM.WARMUP_EPOCH": 1, "OPTIM.WARMUP_TYPE": "constant", "OPTIM.WARMUP_CONS_LR": 1e-5}
    build(setup, tmp_path, **opts).train()
    ckpt = torch.load(tmp_path / "prompt_learner" / "model.pth.tar-2", weights_only=True)
    assert ckpt["epoch"] == 2 and "successor_state" in ckpt["scheduler"]
    tr = build(setup, tmp_path, **opts, **{"OPTIM.MAX_EPOCH": 3})
    tr.train()
    assert tr.start_epoch == 2
    assert (tmp_path / "prompt_learner" / "model.pth.tar-3").is_file()


def test_fewshot_and_cross_dataset_scripts(setup, tmp_path):
    make_dataset(str(setup["root"] / "data"), "EuroSAT", n_classes=3)
    env = dict(os.environ, DATA=str(setup["root"] / "data"), OUTPUT=str(tmp_path / "output"), SHOTS="2",
               PYTHON=sys.executable, CLIP_OFFLINE="1", SOURCE="dtd",
               OPTS=f"MODEL.BACKBONE.PATH {setup['clip']} TRAINER.DEAR.ROLES_FILE {setup['roles']} "
                    "INPUT.SIZE (32,32) DATALOADER.NUM_WORKERS 0 OPTIM.MAX_EPOCH 1 DATALOADER.TRAIN_X.BATCH_SIZE 4")
    for script, ds in (("fewshot.sh", "dtd"), ("xd_train.sh", "dtd"), ("xd_test.sh", "eurosat")):
        out = subprocess.run(["bash", f"scripts/{script}", ds, "1"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
    log = (tmp_path / "output/xd/test/dtd_to_eurosat/shots_2/DeAR/dear/seed1/log.txt").read_text()
    assert "Inference: cls" in log and "* total: 6" in log  # 3 EuroSAT classes x 2 test images
    assert (tmp_path / "output/fewshot/dtd/shots_2/DeAR/dear/seed1/log.txt").read_text().count("* accuracy") == 1


def test_predict_cli_from_the_run_folder_alone(setup, tmp_path):
    """The run's config.yaml gives the CLIP file, the roles file and INPUT.SIZE: none is repeated."""
    env = dict(os.environ, CLIP_OFFLINE="1")
    train = subprocess.run(
        [sys.executable, "train.py", "--root", str(setup["root"] / "data"), "--trainer", "DeAR", "--config-file",
         "configs/dear.yaml", "--dataset-config-file", "configs/datasets/dtd.yaml", "--output-dir", str(tmp_path),
         "--seed", "1", "MODEL.BACKBONE.PATH", setup["clip"], "TRAINER.DEAR.ROLES_FILE", setup["roles"],
         "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "0", "DATASET.NUM_SHOTS", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert train.returncode == 0, train.stderr[-2000:]
    img_dir = setup["root"] / "data" / "dtd" / "images" / "class_a"

    def predict(*extra):
        return subprocess.run([sys.executable, "-m", "trainers.predict", "--model-dir", str(tmp_path), *extra,
                               "--classnames", "class a,class b,class c", "--image", str(img_dir), "--topk", "2"],
                              cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)

    out = predict("--load-epoch", "1")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "fusion weights: cls=0.7" in out.stdout
    assert out.stdout.count("per path: cls (alpha") == 6  # 6 images of class_a (3 train, 1 val, 2 test)
    assert re.search(r"color \(alpha 0\.0\d+\) -> class [abc]", out.stdout)
    missing = predict("--load-epoch", "7")  # checked before CLIP is loaded, in one line
    assert missing.returncode == 2 and "no checkpoint for epoch 7 (saved epochs: 1)" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_fusion_lr_multiplier_gives_the_fusion_weights_their_own_rate(setup, tmp_path):
    tr = build(setup, tmp_path, **{"TRAINER.DEAR.FUSION_LR_MULT": 10.0, "OPTIM.LR": 0.01})
    groups = tr.optim.param_groups
    assert len(groups) == 2 and groups[1]["params"] == [tr.model.learner.fusion_weights]
    assert groups[0]["lr"] == pytest.approx(0.01) and groups[1]["lr"] == pytest.approx(0.1)
    assert len(build(setup, tmp_path / "one").optim.param_groups) == 1  # default: the paper's single rate
