"""Time the networks of finished experiments again, all together in one run, and check their table rows.

    echo -10 > /proc/self/autogroup
    python experiments/retime_picks.py --results docs/results/fmnist_front_finetuned \\
        --results docs/results/dmasking_vs_ilp --out runs/retime/retime.json

Whole-network latency on a shared virtual machine moves with the host state (``docs/measurement.md``), so a
conclusion drawn from one timing run of an experiment's picks ("the front's networks run 1.3-1.9x their
prediction") needs a second run before it is believed. For every distinct network in the ``rows.jsonl`` of each
``--results`` folder this script:

1. compiles the integer network it deploys as and times all of them together (``--rounds`` interleaved passes
   with the host-state extra passes; the helper the experiments use);
2. with ``--kernel-passes N`` (default 2), times every table kernel of those networks again, in a seeded shuffled
   order, with the table's own schedules, and sums them per network. If the searches picked networks whose rows
   happen to be *under*-measured (a winner's curse: optimising against a noisy table selects its low errors), the
   re-timed sums of the picks would exceed the table's, and not those of random networks.

Writes ``--out`` (refused if it exists, unless ``--force``): per network its role, predicted latency, the table's
Σ kernels, the re-timed Σ, the earlier run's and this run's measured latency. Runs only on the table's hardware.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _networks(folders: list[str]) -> list[dict]:
    nets: dict[str, dict] = {}
    for folder in folders:
        f = Path(folder)
        earlier = {}
        if (f / "timing.json").is_file():
            earlier = json.loads((f / "timing.json").read_text()).get("by_candidate", {})
        for line in (f / "rows.jsonl").read_text().splitlines():
            r = json.loads(line)
            role = r.get("role") or r.get("method") or "?"
            net = nets.setdefault(r["candidate"], {"candidate": r["candidate"], "roles": [],
                                                   "predicted_latency_ms": r.get("predicted_latency_ms"),
                                                   "accuracy": r.get("accuracy"),
                                                   "earlier_measured_ms": earlier.get(r["candidate"], {})
                                                   .get("measured_ms")})
            tag = f"{f.name}:{role}"
            if tag not in net["roles"]:
                net["roles"].append(tag)
    return list(nets.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", action="append", required=True, help="an experiment's result folder (repeat)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--space", default="mbconv-fmnist")
    ap.add_argument("--hardware", default=None, help="table (default: cpu-<this CPU>-2t)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--kernel-passes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="overwrite --out")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.force:
        print(f"{out} exists (measured data); pass --force to overwrite it or choose another --out.", file=sys.stderr)
        return 2
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    import numpy as np

    import hao
    from _verify import this_cpu_table, time_candidates
    from hao.latency.backend import kernel_precision, replace_bits
    from hao.latency.runlog import load_average
    from hao.latency.table import hardware_dir, load_table
    from hao.latency.tvm_backend import TVMBackend, pin_threads
    from hao.space import Candidate

    pin_threads(args.threads)
    hw = args.hardware or this_cpu_table()
    space = hao.get_space(args.space)
    table = load_table(hw)
    nets = _networks(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    cache = out.with_name(out.stem + "_networks.json")
    if cache.exists() and args.force:
        cache.unlink()
    t0 = time.perf_counter()
    timing = time_candidates(space, hw, [n["candidate"] for n in nets], args.rounds, args.threads, args.seed, cache)
    if not timing.get("timed"):
        print(f"nothing timed: {timing.get('why')}", file=sys.stderr)
        return 2

    def run_kernel(k):  # sub-8-bit rows run the int8 program
        return replace_bits(k, 8, 8) if kernel_precision(k) == "int8-mapped" else k

    kernels = {n["candidate"]: [run_kernel(k) for k in space.kernels(Candidate.from_json(n["candidate"]))]
               for n in nets}
    distinct = sorted({k for ks in kernels.values() for k in ks}, key=lambda k: k.short())
    retimed: dict = {k: [] for k in distinct}
    if args.kernel_passes:
        be = TVMBackend(database_dir=hardware_dir(hw) / "tuning_db", threads=args.threads, seed=args.seed)
        try:
            for p in range(args.kernel_passes):
                order = list(distinct)
                random.Random(args.seed + p).shuffle(order)
                for k in order:
                    m = be.measure(k)
                    retimed[k].append(m.latency_ms if m.ok else float("nan"))
                print(f"kernel pass {p + 1}/{args.kernel_passes}: {len(order)} kernels", flush=True)
        finally:
            be.close()
    for n in nets:
        ks = kernels[n["candidate"]]
        n["n_kernels"] = len(ks)
        n["table_sum_ms"] = float(sum(table.latency(k) for k in ks))
        n["retimed_sum_ms"] = float(sum(np.nanmin(retimed[k]) for k in ks)) if args.kernel_passes else None
        n["measured_ms"] = timing["by_candidate"][n["candidate"]]["measured_ms"]
        n["fast_state"] = timing["by_candidate"][n["candidate"]].get("fast_state")
        pred = n["predicted_latency_ms"]
        print(f"{'/'.join(n['roles']):60s} predicted {pred or float('nan'):.3f}  table Σ {n['table_sum_ms']:.3f}  "
              f"re-timed Σ {n['retimed_sum_ms'] or float('nan'):.3f}  earlier {n['earlier_measured_ms'] or 0:.3f}  "
              f"now {n['measured_ms']:.3f}")
    res = {"hardware": hw, "space": args.space, "results": args.results, "rounds": args.rounds,
           "kernel_passes": args.kernel_passes, "load_average_start": timing.get("load_average_start"),
           "load_average_end": load_average(), "wall_s": round(time.perf_counter() - t0, 1),
           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "networks": nets,
           "kernels": [{"kernel": k.short(), "table_ms": table.latency(k), "retimed_ms": retimed[k]}
                       for k in distinct]}
    out.write_text(json.dumps(res, indent=1))
    print(f"-> {out} ({res['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
