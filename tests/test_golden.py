"""Stored outputs of every trainer on a fixed tiny CLIP (``tests/golden.py``); refactors must reproduce them.

The outputs are recomputed once, in a process of their own under pinned numerics (as they were stored), so
that the comparison does not depend on the processor the tests run on."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from golden import CASES, HERE, ROOT, TOL, path_of


@pytest.fixture(scope="module")
def recomputed(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden")
    env = {k: v for k, v in os.environ.items() if k != "DEAR_NUMERICS"}
    proc = subprocess.run([sys.executable, osp.join(HERE, "golden.py"), "--out", str(out)], cwd=ROOT,
                          env=dict(env, CLIP_OFFLINE="1"), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_equal_the_stored_golden_ones(name, recomputed):
    stored = torch.load(path_of(name), weights_only=True)
    now = torch.load(osp.join(recomputed, osp.basename(path_of(name))), weights_only=True)
    assert sorted(now) == sorted(stored)
    for key, want in stored.items():
        got = now[key]
        assert got.shape == want.shape, key
        assert torch.allclose(got.to(want.dtype), want, atol=TOL, rtol=0), (key, (got - want).abs().max().item())
