"""The benchmark's naive step computes what DeAR's step computes, so their timings compare like with like."""
import argparse

import torch

from benchmarks.train_step import build, losses, naive_outputs


def test_naive_steps_compute_the_same_losses_and_gradients():
    args = argparse.Namespace(resolution=32, classes=4)
    model = build(args, torch.device("cpu"))
    model.train()
    torch.manual_seed(0)
    image = torch.randn(2, 3, 32, 32)
    label = torch.tensor([1, 3])
    frozen_text = model.text_frozen.clone()
    results = []
    for compute in (lambda: model(image, with_frozen=True), lambda: naive_outputs(model, image, True),
                    lambda: naive_outputs(model, image, False)):
        model.text_frozen = frozen_text
        out = compute()
        loss = losses(model, out, label)
        grads = torch.autograd.grad(loss, list(model.learner.parameters()))
        results.append((loss.detach(), out["logits"].detach(), grads))
    ref_loss, ref_logits, ref_grads = results[0]
    for loss, logits, grads in results[1:]:
        assert torch.allclose(loss, ref_loss, atol=1e-5)
        assert torch.allclose(logits, ref_logits, atol=1e-4)
        for a, b in zip(ref_grads, grads):
            assert torch.allclose(a, b, atol=1e-5 + 1e-3 * a.abs().max().item())
