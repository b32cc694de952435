"""vit-fmnist end to end: joint depth/heads/MLP + bits + quantization-groups search on a TVM table, then verified.

    python experiments/vit_search.py --out runs/vit_search [--hardware cpu-znver4-2t]      # ~10-20 min
    python experiments/vit_search.py --out /tmp/smoke --smoke                               # CI setting

The pipeline of ``experiments/fmnist_joint_search.py`` run on the transformer space: the exact Pareto front of
(Hessian proxy, predicted latency) from the front solver, ``--n-verify`` (default 8) latency budgets answered by
lookup on it, each verified for

* *accuracy*: the sub-network extracted from the trained ViT supernet (``checkpoints/vit-fmnist``), activation
  ranges recalibrated on training images, group-wise fake-quantized, evaluated on the 10k test split;
* *latency*: the float32 network compiled whole with TVM (torch.export → Relax; its matmul, softmax, layer-norm
  and GELU tasks scheduled from the table's tuning database), timed in interleaved passes, and compared with
  the predictor's float32 figure for the same architecture. The integer deployment compiler covers the MBConv
  family only, so the searched mixed-precision latency (int8 ``linear`` rows; sub-8-bit layers answered by the
  int8 rows) is the table's, not a whole-network measurement.

The table must hold token rows: ``hao calibrate --hardware H --space vit-fmnist`` (the default hardware is
``cpu-<this CPU>-2t``). Every option of ``fmnist_joint_search.py`` is accepted and passed on; see its ``--help``.
Outputs as there (``summary.json``, ``verified.csv``, ``fmnist_front.png``) in ``--out``.
"""
from __future__ import annotations

import sys
from typing import Any

import fmnist_joint_search  # noqa: E402  (experiments/ is on sys.path when this file runs)
from _verify import this_cpu_table  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(__doc__)
        return {}
    if "--space" not in args:
        args += ["--space", "vit-fmnist"]
    if "--hardware" not in args:
        args += ["--hardware", this_cpu_table()]
    if "--checkpoint-dir" not in args:
        args += ["--checkpoint-dir", "checkpoints/vit-fmnist"]
    return fmnist_joint_search.main(args)


if __name__ == "__main__":
    main()
