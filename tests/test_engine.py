"""The built-in Dassl-compatible engine: aliasing, config, optim, schedulers, evaluator, checkpoints."""
import os.path as osp

import pytest
import torch
from conftest import make_cfg


def test_dassl_alias_serves_builtin_modules():
    import dassl.engine

    import dasslite.engine

    assert dasslite.engine_name() == "builtin"
    assert dassl.engine.TrainerX is dasslite.engine.TrainerX
    assert dassl.engine.TRAINER_REGISTRY is dasslite.engine.TRAINER_REGISTRY
    assert dasslite.use_dassl() == "builtin"  # idempotent


def test_trainers_and_datasets_registered():
    from dassl.data.datasets import DATASET_REGISTRY
    from dassl.engine import TRAINER_REGISTRY

    import datasets  # noqa: F401
    import trainers  # noqa: F401

    assert "ZeroshotCLIP" in TRAINER_REGISTRY
    for name in ["ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "OxfordFlowers", "Food101",
                 "FGVCAircraft", "SUN397", "DescribableTextures", "EuroSAT", "UCF101", "ImageNetV2",
                 "ImageNetSketch", "ImageNetA", "ImageNetR", "ImageFolder"]:
        assert name in DATASET_REGISTRY, name


def test_cfg_has_coop_keys_and_rejects_typos():
    cfg = make_cfg()
    for key in ["DATASET.NUM_SHOTS", "DATASET.SUBSAMPLE_CLASSES", "OPTIM.WARMUP_CONS_LR", "INPUT.RRCROP_SCALE",
                "DATALOADER.TRAIN_X.BATCH_SIZE", "TEST.FINAL_MODEL", "MODEL.BACKBONE.PATH"]:
        node = cfg
        for part in key.split("."):
            node = node[part]
    with pytest.raises(AssertionError, match="Non-existent key"):
        cfg.merge_from_list(["OPTIM.LEARNING_RATE", 0.1])
    cfg.freeze()
    with pytest.raises(AttributeError):
        cfg.OPTIM.LR = 1.0


@pytest.mark.parametrize("name,cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                      ("adamw", torch.optim.AdamW)])
def test_build_optimizer(name, cls):
    from dassl.optim import build_optimizer

    cfg = make_cfg(**{"OPTIM.NAME": name, "OPTIM.LR": 0.01})
    model = torch.nn.Linear(3, 2)
    model.bias.requires_grad_(False)
    opt = build_optimizer(model, cfg.OPTIM)
    assert isinstance(opt, cls)
    assert opt.param_groups[0]["lr"] == 0.01
    assert len(opt.param_groups[0]["params"]) == 1  # frozen bias excluded


def test_bad_optimizer_name_lists_choices():
    from dassl.optim import build_optimizer

    cfg = make_cfg(**{"OPTIM.NAME": "lion"})
    with pytest.raises(ValueError, match="adamw"):
        build_optimizer(torch.nn.Linear(2, 2), cfg.OPTIM)


def _lrs(cfg, epochs):
    from dassl.optim import build_lr_scheduler, build_optimizer

    opt = build_optimizer(torch.nn.Linear(2, 2), cfg.OPTIM)
    sched = build_lr_scheduler(opt, cfg.OPTIM)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_cosine_with_constant_warmup_matches_paper_schedule():
    cfg = make_cfg(**{"OPTIM.NAME": "adamw", "OPTIM.LR": 1e-3, "OPTIM.LR_SCHEDULER": "cosine",
                      "OPTIM.MAX_EPOCH": 10, "OPTIM.WARMUP_EPOCH": 1, "OPTIM.WARMUP_TYPE": "constant",
                      "OPTIM.WARMUP_CONS_LR": 1e-5})
    lrs = _lrs(cfg, 10)
    assert lrs[0] == pytest.approx(1e-5)
    assert lrs[1] == pytest.approx(1e-3)  # as in Dassl: the cosine starts after the warm-up epoch
    assert lrs[2] == pytest.approx(1e-3 * (1 + torch.cos(torch.tensor(torch.pi / 10)).item()) / 2, rel=1e-5)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))  # cosine decays after warm-up


def test_single_step_and_linear_warmup():
    cfg = make_cfg(**{"OPTIM.LR": 0.1, "OPTIM.LR_SCHEDULER": "single_step", "OPTIM.STEPSIZE": (2,),
                      "OPTIM.GAMMA": 0.5, "OPTIM.MAX_EPOCH": 4})
    assert _lrs(cfg, 4) == pytest.approx([0.1, 0.1, 0.05, 0.05])
    cfg = make_cfg(**{"OPTIM.LR": 0.1, "OPTIM.LR_SCHEDULER": "cosine", "OPTIM.MAX_EPOCH": 4,
                      "OPTIM.WARMUP_EPOCH": 2, "OPTIM.WARMUP_TYPE": "linear", "OPTIM.WARMUP_MIN_LR": 0.01})
    lrs = _lrs(cfg, 3)
    assert lrs[0] == pytest.approx(0.01) and lrs[1] == pytest.approx(0.05)


def test_classification_evaluator_numbers(capsys):
    from dassl.evaluation import build_evaluator

    cfg = make_cfg(**{"TEST.PER_CLASS_RESULT": True})
    ev = build_evaluator(cfg, lab2cname={0: "a", 1: "b"})
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 1])
    ev.process(logits, labels)
    res = ev.evaluate()
    assert res["accuracy"] == pytest.approx(50.0)
    assert res["error_rate"] == pytest.approx(50.0)
    # class 0: P=1/3, R=1 -> F1=0.5 ; class 1: P=1, R=1/3 -> F1=0.5
    assert res["macro_f1"] == pytest.approx(50.0)
    assert res["perclass_accuracy"] == pytest.approx((100.0 + 100.0 / 3) / 2)
    assert "* accuracy: 50.0%" in capsys.readouterr().out


def test_checkpoint_layout_and_atomic_save(tmp_path):
    from dassl.utils import load_checkpoint, save_checkpoint

    state = {"state_dict": {"w": torch.ones(2)}, "epoch": 3}
    path = save_checkpoint(state, str(tmp_path / "prompt_learner"))
    assert osp.basename(path) == "model.pth.tar-3"
    assert (tmp_path / "prompt_learner" / "checkpoint").read_text().strip() == "model.pth.tar-3"
    assert not list((tmp_path / "prompt_learner").glob("*.tmp"))
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.ones(2))
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        load_checkpoint(str(tmp_path / "nope"))


def test_transforms_match_config():
    from dassl.data.transforms import build_transform
    from PIL import Image

    cfg = make_cfg(**{"INPUT.SIZE": (32, 32), "INPUT.INTERPOLATION": "bicubic",
                      "INPUT.TRANSFORMS": ("random_resized_crop", "random_flip", "normalize"),
                      "INPUT.RRCROP_SCALE": (0.5, 1.0)})
    tr = build_transform(cfg, is_train=True)
    te = build_transform(cfg, is_train=False)
    names = [type(t).__name__ for t in tr.transforms]
    assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    assert tr.transforms[0].scale == (0.5, 1.0)
    img = Image.new("RGB", (48, 40))
    assert te(img).shape == (3, 32, 32)
    cfg.INPUT.TRANSFORMS = ("cutmix",)
    with pytest.raises(ValueError, match="supported"):
        build_transform(cfg, is_train=True)
