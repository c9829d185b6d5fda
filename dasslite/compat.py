"""Work-arounds that keep the project running on the real Dassl.pytorch with current PyTorch."""
from __future__ import annotations

import warnings


def build_lr_scheduler(optimizer, optim_cfg):
    """``dassl.optim.build_lr_scheduler``, or the built-in equivalent where Dassl's fails.

    Dassl 0.6.3's warm-up schedulers pass ``verbose`` positionally to ``LRScheduler.__init__``, which
    PyTorch >= 2.7 no longer accepts (``TypeError: ... takes from 2 to 3 positional arguments``). The
    built-in schedulers follow the same semantics (warm-up epochs, then the main schedule from epoch 0).
    """
    from dassl.optim import build_lr_scheduler as dassl_build

    try:
        return dassl_build(optimizer, optim_cfg)
    except TypeError as e:
        if "positional argument" not in str(e):
            raise
        from .optim.lr_scheduler import build_lr_scheduler as builtin_build

        warnings.warn(f"Dassl's build_lr_scheduler fails with this PyTorch ({e}); using dasslite's equivalent",
                      stacklevel=2)
        return builtin_build(optimizer, optim_cfg)
