"""The benchmarks time what training computes: each trainer's benchmark step is its ``forward_backward``, and
DeAR's naive steps compute DeAR's losses and gradients, so their timings compare like with like."""
import pytest
import torch
from golden import TINY_OPTS, _setup, tiny_opts

from benchmarks.common import bench_config, class_names, make_trainer, train_step
from benchmarks.train_step import naive_outputs

TRAINED = [t for t in TINY_OPTS if t != "ZeroshotCLIP"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return _setup(str(tmp_path_factory.mktemp("bench")))


@pytest.mark.parametrize("trainer", TRAINED)
def test_benchmark_step_is_the_trainers_forward_backward(setup, tmp_path, trainer):
    """A trainer built by ``make_trainer`` (no data set) from the same config takes the same step as one built
    by Dassl's ``build_trainer``: same loss, and the same learner after the optimizer step."""
    from dassl.engine import build_trainer

    import datasets  # noqa: F401  (registers the data sets)
    from clipkit.loader import load_clip

    overrides = {"DATASET.ROOT": setup["root"], "DATASET.NAME": "DescribableTextures", "SEED": 1,
                 "OUTPUT_DIR": str(tmp_path), "MODEL.BACKBONE.PATH": setup["clip"], "INPUT.SIZE": (32, 32),
                 "DATALOADER.NUM_WORKERS": 0, "DATASET.SUBSAMPLE_CLASSES": "base", "VERBOSE": False,
                 **tiny_opts(trainer, setup)}
    cfg = bench_config(trainer, overrides)  # the official config (configs/<name>.yaml), PREC fp32
    torch.manual_seed(0)
    real = build_trainer(cfg)
    bench = make_trainer(cfg, load_clip("ViT-B/16", setup["clip"]), real.dm.dataset.classnames)
    assert bench.template == real.template and bench.model.classnames == real.model.classnames
    bench.learner.load_state_dict(real.learner.state_dict())
    g = torch.Generator().manual_seed(3)
    batch = {"img": torch.randn(3, 3, 32, 32, generator=g), "label": torch.tensor([0, 2, 1])}

    real.set_model_mode("train")
    real.batch_idx, real.num_batches = 0, 10
    summary = real.forward_backward(batch)
    loss = train_step(bench, batch["img"], batch["label"])
    assert loss.item() == pytest.approx(summary["loss"], rel=1e-6, abs=1e-6)
    after = dict(real.learner.named_parameters())
    for name, p in bench.learner.named_parameters():
        assert torch.allclose(p, after[name], atol=1e-6, rtol=1e-5), name


def test_naive_steps_compute_the_same_losses_and_gradients():
    from clipkit.tiny import VIT_B16_SHAPE, build_clip

    tr = make_trainer(bench_config("DeAR"), build_clip(image_resolution=32, **VIT_B16_SHAPE), class_names(4))
    model = tr.model
    model.train()
    torch.manual_seed(0)
    image = torch.randn(2, 3, 32, 32)
    label = torch.tensor([1, 3])
    frozen_text = model.text_frozen.clone()
    results = []
    for compute in (lambda: tr.train_outputs(image, label), lambda: naive_outputs(model, image, True),
                    lambda: naive_outputs(model, image, False)):
        model.text_frozen = frozen_text
        out = compute()
        terms = tr.loss_terms(out, label)
        loss = sum(w * t for w, t in terms.values())
        grads = torch.autograd.grad(loss, list(model.learner.parameters()))
        results.append((loss.detach(), out["logits"].detach(), grads))
    model.text_frozen = frozen_text
    ref_loss, ref_logits, ref_grads = results[0]
    for loss, logits, grads in results[1:]:
        assert torch.allclose(loss, ref_loss, atol=1e-5)
        assert torch.allclose(logits, ref_logits, atol=1e-4)
        for a, b in zip(ref_grads, grads):
            assert torch.allclose(a, b, atol=1e-5 + 1e-3 * a.abs().max().item())


def test_flops_counts_products_and_cpu_attention_forward_and_backward():
    """``common.flops`` counts 2mnk per matrix product and PyTorch's CPU flash attention (which the stock
    counter misses) as the two products it computes, its backward as the stock SDPA backward formula."""
    import torch.nn.functional as F

    from benchmarks.common import flops

    x, w = torch.randn(4, 8), torch.randn(16, 8)
    assert flops(lambda: F.linear(x, w)) == {"mm": 2 * 4 * 8 * 16, "total": 2 * 4 * 8 * 16}
    b, h, n, d = 2, 3, 5, 4
    q, k, v = (torch.randn(b, h, n, d, requires_grad=True) for _ in range(3))
    forward = 2 * (2 * b * h * n * n * d)  # scores and the weighted values
    assert flops(lambda: F.scaled_dot_product_attention(q, k, v))["total"] == forward
    both = flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    assert both["total"] == forward + 5 * forward // 2  # backward: 5 products (scores again, dP, dV, dQ, dK)
    # a DeAR step counts fewer operations than the same step computed naively (what its construction saves)
    from benchmarks.train_step import naive_outputs
    from clipkit.tiny import VIT_B16_SHAPE, build_clip

    tr = make_trainer(bench_config("DeAR"), build_clip(image_resolution=32, **VIT_B16_SHAPE), class_names(4))
    image, label = torch.randn(2, 3, 32, 32), torch.tensor([1, 3])
    frozen_text = tr.model.text_frozen.clone()
    ours = flops(lambda: train_step(tr, image, label))["total"]
    naive = flops(lambda: train_step(tr, image, label, lambda: naive_outputs(tr.model, image, False)))["total"]
    tr.model.text_frozen = frozen_text
    assert 0 < ours < naive


def test_study_plan_follows_dassl_base_to_novel():
    """The study's runs: base = ceil(n/2) classes (Dassl's subsample_classes), 16 shots each, floor(train/batch)
    steps per epoch (Dassl drops the last incomplete batch), test images shared by class count."""
    from benchmarks.study_time import STUDY, plan

    assert len(STUDY) == 11 and sum(t for _, t in STUDY.values()) == 133_696
    dtd = plan(47, 1692, batch=16, epochs=10)
    assert (dtd["base"], dtd["new"], dtd["train"], dtd["iters"]) == (24, 23, 384, 240)
    assert dtd["test_base"] + dtd["test_new"] == 1692 and dtd["test_base"] == 864
    assert plan(10, 8100, batch=128, epochs=2)["iters"] == 2  # 80 images < one batch: one batch of all of them


def test_study_time_measures_a_data_set_and_the_loader(tmp_path):
    """One data set of the study on a ViT-B/16-shaped CLIP at 32 px: the run projects the slower of computation
    and loading per phase, and the loader's rate comes from real JPEGs through the config's transforms."""
    from benchmarks.study_time import loader_rate, measure_dataset
    from clipkit.tiny import VIT_B16_SHAPE, build_clip

    cfg = bench_config("DeAR", {"INPUT.SIZE": (32, 32)})
    rate = loader_rate(cfg, is_train=True, images=8, workers=0, batch=4)
    assert rate > 0
    clip = build_clip(image_resolution=32, **VIT_B16_SHAPE)
    g = torch.Generator().manual_seed(0)
    row = measure_dataset("eurosat", cfg, clip, torch.randn(16, 3, 32, 32), torch.randn(4, 3, 32, 32),
                          {"train": rate, "test": rate}, rounds=1, g=g)
    assert (row["base"], row["new"], row["iters"]) == (5, 5, 50)
    assert row["step_s"] > 0 and row["train_compute_s"] == pytest.approx(50 * row["step_s"])
    assert row["train_load_s"] == pytest.approx(50 * 16 / rate)
    assert row["run_s"] == pytest.approx(max(row["train_compute_s"], row["train_load_s"])
                                         + max(row["eval_compute_s"], row["eval_load_s"]))
