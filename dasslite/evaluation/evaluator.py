"""Classification evaluator: accuracy, error, macro-F1, optional per-class accuracy and confusion matrix."""
from __future__ import annotations

import os.path as osp
from collections import OrderedDict, defaultdict

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score

from .. import distributed
from ..utils import Registry
from ..utils.atomic import atomic_save

EVALUATOR_REGISTRY = Registry("EVALUATOR")


class EvaluatorBase:
    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def reset(self) -> None:
        raise NotImplementedError

    def process(self, mo, gt) -> None:
        raise NotImplementedError

    def evaluate(self):
        raise NotImplementedError


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Accumulates predictions over batches; ``evaluate()`` prints and returns the metrics."""

    def __init__(self, cfg, lab2cname=None, **kwargs) -> None:
        super().__init__(cfg)
        self._lab2cname = lab2cname
        self.reset()
        self._per_class_res = None
        if cfg.TEST.PER_CLASS_RESULT:
            if lab2cname is None:
                raise ValueError("lab2cname must be given for TEST.PER_CLASS_RESULT")
            self._per_class_res = defaultdict(list)

    def reset(self) -> None:
        self._correct = 0
        self._total = 0
        self._y_true: list[int] = []
        self._y_pred: list[int] = []
        if getattr(self, "_per_class_res", None) is not None:
            self._per_class_res = defaultdict(list)

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        """``mo``: [N, C] model scores; ``gt``: [N] labels."""
        pred = mo.max(1)[1]
        matches = pred.eq(gt).int()
        self._correct += int(matches.sum().item())
        self._total += gt.shape[0]
        self._y_true.extend(gt.data.cpu().numpy().tolist())
        self._y_pred.extend(pred.data.cpu().numpy().tolist())
        if self._per_class_res is not None:
            for i, label in enumerate(gt):
                self._per_class_res[int(label.item())].append(int(matches[i].item()))

    def _all_ranks(self) -> tuple[int, int, list[int], list[int], dict | None]:
        """``(correct, total, y_true, y_pred, per_class)`` over every rank's images (this rank's alone in one
        process). Each test image is scored by exactly one rank, so these are the single-process numbers."""
        per_class = dict(self._per_class_res) if self._per_class_res is not None else None
        mine = (self._correct, self._total, self._y_true, self._y_pred, per_class)
        if not distributed.is_distributed():
            return mine
        parts = distributed.all_gather(mine)
        y_true = [y for p in parts for y in p[2]]
        y_pred = [y for p in parts for y in p[3]]
        merged = None
        if per_class is not None:
            merged = defaultdict(list)
            for p in parts:
                for label, hits in p[4].items():
                    merged[label].extend(hits)
        return sum(p[0] for p in parts), sum(p[1] for p in parts), y_true, y_pred, merged

    def evaluate(self) -> OrderedDict:
        """Metrics of everything processed since :meth:`reset`, over all ranks under ``torchrun`` (every rank
        gets the same numbers; rank 0 alone writes the confusion matrix)."""
        correct, total, y_true, y_pred, per_class_res = self._all_ranks()
        results = OrderedDict()
        acc = 100.0 * correct / max(total, 1)
        err = 100.0 - acc
        macro_f1 = 100.0 * f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true))
        results["accuracy"] = acc
        results["error_rate"] = err
        results["macro_f1"] = macro_f1
        print(
            "=> result\n"
            f"* total: {total:,}\n"
            f"* correct: {correct:,}\n"
            f"* accuracy: {acc:.1f}%\n"
            f"* error: {err:.1f}%\n"
            f"* macro_f1: {macro_f1:.1f}%"
        )
        if per_class_res is not None:
            print("=> per-class result")
            accs = []
            for label in sorted(per_class_res):
                res = per_class_res[label]
                correct, total = sum(res), len(res)
                acc_c = 100.0 * correct / total
                accs.append(acc_c)
                print(f"* class: {label} ({self._lab2cname[label]})\ttotal: {total:,}\t"
                      f"correct: {correct:,}\tacc: {acc_c:.1f}%")
            mean_acc = float(np.mean(accs))
            print(f"* average: {mean_acc:.1f}%")
            results["perclass_accuracy"] = mean_acc
        if self.cfg.TEST.COMPUTE_CMAT and distributed.is_main_process():
            cmat = confusion_matrix(y_true, y_pred, normalize="true")
            save_path = osp.join(self.cfg.OUTPUT_DIR, "cmat.pt")
            atomic_save(lambda f: torch.save(torch.as_tensor(cmat), f), save_path)
            print(f"Confusion matrix is saved to {save_path}")
        return results


def build_evaluator(cfg, **kwargs) -> EvaluatorBase:
    name = cfg.TEST.EVALUATOR
    return EVALUATOR_REGISTRY.get(name)(cfg, **kwargs)
