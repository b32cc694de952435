"""Fake-quant evaluation speed: the old path vs the new one, side by side, on the largest mbconv-fmnist sub-network.

old: reference elementwise formulas (``hao.quant.reference_kernels``), weights re-quantized every call,
     ``torch.no_grad``, loader batches of ``--batch`` fed whole (the pre-change ``evaluate_full``).
new: ``hao.train.evaluate_full`` (fused ``fake_quantize_per_tensor_affine`` kernels, eval-mode weight cache,
     ``torch.inference_mode``) with each ``--chunks`` value (``0`` = feed loader batches whole;
     evaluate_full's default chunk is hao.train.evaluate.EVAL_CHUNK).

Every configuration is timed ``--repeats`` times, interleaved (old, new@c1, new@c2, ... per round); medians are
reported with ratios old/new. Accuracy and loss of every configuration are compared to the old path, and the
old vs new logits (max |diff|, argmax disagreements) on the same images.

    nice -n 19 python benchmarks/quant_eval_speed.py --n 2000 --threads 2 --out quant_eval_speed.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F


def old_evaluate(model, batches):
    """The pre-change evaluate_full, run with the reference quantizer formulas. Returns (acc, loss, logits)."""
    from hao.quant import reference_kernels
    from hao.train.evaluate import _mode
    correct = total = 0
    loss_sum = 0.0
    outs = []
    with reference_kernels(), torch.no_grad(), _mode(model, False):
        for x, y in batches:
            out = model(x)
            outs.append(out)
            loss_sum += float(F.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
            total += int(y.shape[0])
    return correct / total, loss_sum / total, torch.cat(outs)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="checkpoints/mbconv-fmnist/supernet.pt")
    ap.add_argument("--n", type=int, default=2000, help="test images (first n of the 10k split)")
    ap.add_argument("--batch", type=int, default=1000, help="loader batch size")
    ap.add_argument("--chunks", default="0,128,256,500", help="new-path chunk sizes to time (0 = whole batches)")
    ap.add_argument("--fused-kernel", action="store_true",
                    help="also time ActQuant.fused_kernel=True (round/clamp by fake_quantize_per_tensor_affine)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    import hao
    from hao.data import fashion_mnist
    from hao.quant import ActQuant
    from hao.train import evaluate_full, load_supernet, prepare_subnet
    space = hao.get_space("mbconv-fmnist")
    net = load_supernet(space, a.checkpoint)
    tr, te = fashion_mnist("train"), fashion_mnist("test")
    c = tr.subset(250, seed=1)
    sub = prepare_subnet(space.build(space.largest(), net), [(c.x, c.y)])
    batches = [(te.x[i:min(i + a.batch, a.n)], te.y[i:min(i + a.batch, a.n)]) for i in range(0, a.n, a.batch)]
    acts = [m for m in sub.modules() if isinstance(m, ActQuant)]

    def new(chunk, fused=False):
        def run():
            for m in acts:
                m.fused_kernel = fused
            try:
                r = evaluate_full(sub, batches, chunk=chunk or None)
            finally:
                for m in acts:
                    m.fused_kernel = False
            return r.accuracy, r.loss
        return run

    configs = {"old": lambda: old_evaluate(sub, batches)[:2]}
    for ch in [int(s) for s in a.chunks.split(",") if s.strip()]:
        configs[f"new@{ch or 'batch'}"] = new(ch)
    if a.fused_kernel:
        configs["new-fused-kernel@batch"] = new(0, fused=True)

    times = {k: [] for k in configs}
    cpu = {k: [] for k in configs}  # process CPU time (all threads): less sensitive to other processes' load
    results = {}
    for _ in range(a.repeats):
        for k, f in configs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            results[k] = f()
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)

    # logits side by side (outside the timing)
    acc_old, loss_old, logits_old = old_evaluate(sub, batches)
    with torch.inference_mode():
        logits_new = torch.cat([sub(x[i:i + 256]) for x, _ in batches for i in range(0, x.shape[0], 256)])
        logits_500 = torch.cat([sub(x[i:i + 500]) for x, _ in batches for i in range(0, x.shape[0], 500)])
        logits_whole = torch.cat([sub(x) for x, _ in batches])
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    out = {
        "n_images": a.n, "loader_batch": a.batch, "threads": torch.get_num_threads(), "repeats": a.repeats,
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "loadavg_1m_before_after": None,
        "median_s": med, "all_s": times,
        "speedup_vs_old": {k: med["old"] / v for k, v in med.items()},
        "median_cpu_s": med_cpu, "all_cpu_s": cpu,
        "cpu_time_ratio_vs_old": {k: med_cpu["old"] / v for k, v in med_cpu.items()},
        "accuracy": {k: r[0] for k, r in results.items()},
        "loss": {k: r[1] for k, r in results.items()},
        "accuracy_identical": all(r[0] == results["old"][0] for r in results.values()),
        "max_abs_loss_diff": max(abs(r[1] - results["old"][1]) for r in results.values()),
        "logits_new256_vs_old": {
            "bitwise_equal": bool(torch.equal(logits_new, logits_old)),
            "max_abs_diff": float((logits_new - logits_old).abs().max()),
            "argmax_disagreements": int((logits_new.argmax(1) != logits_old.argmax(1)).sum())},
        "logits_chunk256_vs_whole_batch_bitwise_equal": bool(torch.equal(logits_new, logits_whole)),
        "logits_chunk500_vs_whole_batch_bitwise_equal": bool(torch.equal(logits_500, logits_whole)),
    }
    if hasattr(os, "getloadavg"):
        out["loadavg_1m_at_end"] = os.getloadavg()[0]
    out.pop("loadavg_1m_before_after")
    print(json.dumps({k: v for k, v in out.items() if k not in ("all_s", "all_cpu_s")}, indent=1))
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(out, fh, indent=1)
    assert math.isfinite(med["old"])
    return out


if __name__ == "__main__":
    main()
