"""Per-layer Hessian traces (hao) vs PyHessian's whole-model trace, side by side at equal samples.

    PYTHONPATH=. python benchmarks/proxy_traces.py [--samples 16 --batch 64 --repeats 3 --threads 1] [--out DIR]

Model: the trained mbconv-fmnist supernet (``checkpoints/mbconv-fmnist/supernet.pt``; a fresh seeded init if
absent), largest sub-network, float weights, eval mode; one batch of Fashion-MNIST training images (random
inputs if the dataset is missing). hao computes every conv/linear layer's trace (all of them from each
Hessian-vector product); PyHessian ``hessian(model, criterion, data).trace(maxIter=samples, tol=-1)`` computes one
whole-model trace. Both times include building the gradient graph. Runs are interleaved; the median of
``--repeats`` is reported with the thread count. Ratio < 1 means hao is faster.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--configs", default="double_backward:8,forward_over_reverse:8,ggn:1,ggn:8",
                   help="comma list of method:vectors_per_call for hao")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)

    import hao
    from hao._imports import lazy_import
    from hao.proxy import float_weights, hessian_traces
    from hao.proxy.proxy import default_checkpoint_dir
    pyhessian = lazy_import("pyhessian")

    torch.set_num_threads(a.threads)
    space = hao.get_space("mbconv-fmnist")
    ckpt = default_checkpoint_dir(space.name) / "supernet.pt"
    if ckpt.exists():
        from hao.train import load_supernet
        net, model_desc = load_supernet(space, ckpt), f"trained supernet {ckpt.name}"
    else:
        net, model_desc = space.supernet(0), "fresh supernet (seed 0; no checkpoint found)"
    net.set_active(space.largest())
    try:
        from hao.data import fashion_mnist
        ds = fashion_mnist("train").subset(a.batch, seed=0)
        x, y, data_desc = ds.x, ds.y, f"{a.batch} Fashion-MNIST training images"
    except Exception:  # noqa: BLE001 - dataset optional for a timing benchmark
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(a.batch, 1, 28, 28, generator=g), torch.randint(0, 10, (a.batch,), generator=g)
        data_desc = f"{a.batch} random inputs (Fashion-MNIST not installed)"
    configs = [(c.split(":")[0], int(c.split(":")[1])) for c in a.configs.split(",")]
    times: dict[str, list[float]] = {f"hao {m} x{k}": [] for m, k in configs} | {"pyhessian": []}
    totals: dict[str, float] = {}
    rel_se: dict[str, list[float]] = {k: [] for k in times}
    with float_weights(net):
        n_layers = 0
        for r in range(a.repeats):
            for m, k in configs:
                t0 = time.perf_counter()
                tr = hessian_traces(net, F.cross_entropy, (x, y), samples=a.samples, seed=r, method=m,
                                    vectors_per_call=k)
                times[f"hao {m} x{k}"].append(time.perf_counter() - t0)
                totals[f"hao {m} x{k}"] = tr.total
                rel_se[f"hao {m} x{k}"].append(tr.total_se / abs(tr.total))
                n_layers = len(tr)
            model = copy.deepcopy(net)
            with torch.random.fork_rng():
                torch.manual_seed(r)
                t0 = time.perf_counter()
                h = pyhessian.hessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False)
                vals = h.trace(maxIter=a.samples, tol=-1.0)
                times["pyhessian"].append(time.perf_counter() - t0)
            totals["pyhessian"] = float(sum(vals) / len(vals))
            rel_se["pyhessian"].append(float(statistics.stdev(vals) / len(vals) ** 0.5 / abs(totals["pyhessian"])))
            del h, model
            print(f"repeat {r}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["pyhessian"]
    res = {"model": model_desc, "data": data_desc, "samples": a.samples, "repeats": a.repeats,
           "threads": torch.get_num_threads(), "hao_layers": n_layers, "median_s": med,
           "ratio_vs_pyhessian": {k: v / base for k, v in med.items()}, "all_s": times,
           "total_trace_last_repeat": totals,
           "median_relative_se_of_total": {k: statistics.median(v) for k, v in rel_se.items()},
           "time_to_equal_se_vs_pyhessian": {
               k: med[k] / base * (statistics.median(rel_se[k]) / statistics.median(rel_se["pyhessian"])) ** 2
               for k in med},
           "note": "hao: per-layer traces of every conv/linear weight (ggn: also sampled with first-order backward "
                   "passes, exact for this piecewise-linear net); PyHessian: one trace over all parameters "
                   "(incl. BN affine and biases); both include building the gradient graph. time_to_equal_se = "
                   "time ratio x (relative SE ratio)^2: the cost of reaching PyHessian's standard error"}
    print(f"\n{model_desc}; {data_desc}; {a.samples} Rademacher samples; {res['threads']} thread(s); "
          f"median of {a.repeats}")
    for k, v in med.items():
        print(f"  {k:34s} {v:8.2f} s   {v / base:5.2f}x PyHessian   total {totals[k]:10.2f} "
              f"rel.SE {res['median_relative_se_of_total'][k]:.3f}   time to equal SE "
              f"{res['time_to_equal_se_vs_pyhessian'][k]:5.2f}x")
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "proxy_traces.json").write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
