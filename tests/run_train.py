"""``python tests/run_train.py [train.py arguments]``: train.py with the test trainer registered.

``KILL_AT=<epoch>:<batch>`` (0-based) sends SIGKILL to this process right after that training step, as
``kill -9`` would at that instant (the step's weights update is done, nothing after it ran).
"""
from __future__ import annotations

import os
import os.path as osp
import signal
import sys

TESTS = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(TESTS)
sys.path[:0] = [ROOT, TESTS]
os.chdir(ROOT)

import dasslite  # noqa: E402

dasslite.use_dassl()

import engine_helpers  # noqa: E402,F401  (registers TinyProbe)

import train  # noqa: E402


def _kill_after(epoch: int, batch: int):
    build = train.build_trainer

    def build_and_arm(cfg):
        trainer = build(cfg)
        step = trainer.forward_backward

        def forward_backward(batch_data):
            out = step(batch_data)
            if (trainer.epoch, trainer.batch_idx) == (epoch, batch):
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return out

        trainer.forward_backward = forward_backward
        return trainer

    return build_and_arm


if __name__ == "__main__":
    if os.environ.get("KILL_AT"):
        e, b = (int(v) for v in os.environ["KILL_AT"].split(":"))
        train.build_trainer = _kill_after(e, b)
    sys.exit(train.main(sys.argv[1:]))
