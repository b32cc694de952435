"""Supernet training (sandwich rule + in-place distillation), BN recalibration and fake-quant evaluation."""
from hao.train.evaluate import (EvalResult, evaluate, evaluate_full, prepare_subnet, recalibrate_bn,
                                 recalibrated_bn)
from hao.train.finetuning import FinetuneConfig, finetune
from hao.train.supernet import (SandwichConfig, file_sha256, load_supernet, save_supernet, smallest_candidate,
                                train_supernet)

__all__ = ["FinetuneConfig", "finetune", "recalibrated_bn", "EvalResult", "SandwichConfig", "evaluate",
           "evaluate_full", "file_sha256", "load_supernet", "prepare_subnet", "recalibrate_bn", "save_supernet",
           "smallest_candidate", "train_supernet"]
