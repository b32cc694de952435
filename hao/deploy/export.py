"""``hao export --tvm``: a calibrated candidate written as a compiled integer TVM library that runs without torch.

:func:`export_integer` writes into the output folder

* ``model.so`` — the Relax executable of :func:`hao.deploy.tvm_module.relax_module` (the table's own int8
  programs, each with its schedule from the hardware's ``tuning_db`` or tuned now on this machine);
* ``deploy.json`` — input / output names, shapes and dtypes, the input's quantization (scale, zero point, bits),
  every layer's output grid, the candidate, the target, which schedules were found / tuned / left at TVM's
  default lowering, the check against the NumPy integer reference, the measured latency (with the load) and
  the table's prediction;
* ``integer_network/`` — the integer program (:class:`~hao.deploy.graph.IntegerNetwork`, JSON + npz);
* ``sample_input.npy`` / ``sample_logits.npy`` and ``run_example.py`` — 20 lines that load the library with the
  TVM runtime and NumPy only, check the sample, and time it.

``hardware``: a table folder under ``latency_models/`` (its target; its ``tuning_db``) or ``native`` (this CPU as
LLVM names it; schedules tuned now into ``OUT/tuning_db``). A foreign target is cross-compiled with the
schedules its database holds and is not run here.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from hao.deploy.graph import IntegerNetwork, integer_network
from hao.errors import ConfigError

__all__ = ["export_integer", "load_integer_network", "EXAMPLE"]

EXAMPLE = '''"""Run the exported integer network with NumPy and the TVM runtime only (no torch, no hao)."""
import json
import os
from pathlib import Path

import numpy as np

here = Path(__file__).resolve().parent
meta = json.loads((here / "deploy.json").read_text())
os.environ.setdefault("TVM_NUM_THREADS", str(meta["threads"]))  # before tvm starts its thread pool
import tvm  # noqa: E402
from tvm import relax  # noqa: E402

dev = tvm.cpu(0)
vm = relax.VirtualMachine(tvm.runtime.load_module(str(here / meta["library"])), dev)
x = np.load(here / "sample_input.npy")          # float32 (1, C, H, W), normalised as in training
logits = vm["main"](tvm.runtime.tensor(x, dev)).numpy()
ref = np.load(here / "sample_logits.npy")
assert np.abs(logits - ref).max() <= 1e-5 * np.abs(ref).max(), "output differs from the exported reference"
print("top-1 class", int(logits.argmax()), "logits", [round(float(v), 3) for v in logits[0]])
timer = vm.time_evaluator("main", dev, number=1, repeat=7, min_repeat_ms=20)
ms = [min(np.median(timer(tvm.runtime.tensor(x, dev)).results) * 1e3 for _ in range(5))]
print(f"latency {ms[0]:.3f} ms (lowest median of 5 sessions; at export: {meta['timing'].get('measured_ms')})")
'''


def _target(hardware: str, threads: int) -> tuple[dict[str, Any], Path | None]:
    """(target dict, the hardware folder or None for ``native``)."""
    from hao.latency.table import hardware_dir
    from hao.latency.tvm_backend import default_target

    if hardware == "native":
        return default_target(threads), None
    folder = hardware_dir(hardware)
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if not meta.get("target_json"):
        raise ConfigError(f"--tvm {hardware}: {meta_path} has no 'target_json' (it was not calibrated with TVM); "
                          "use a calibrated table, or --tvm native for this CPU (docs/deployment.md).")
    return json.loads(meta["target_json"]), folder


def _predicted_ms(hardware: str, kernels: list, space: str | None = None) -> float | None:
    from hao.latency.predictor import LatencyPredictor
    from hao.latency.table import load_table

    try:
        pred = LatencyPredictor.from_table(load_table(hardware), space=space)
        return round(float(pred.network_latency(kernels)), 4)
    except Exception:  # noqa: BLE001 - a table without int8 rows still exports
        return None


def export_integer(model: Any, space: Any, candidate: Any, out: str | os.PathLike, *, hardware: str = "native",
                   trials: int = 8, threads: int = 2, seed: int = 0, check_images: np.ndarray | None = None,
                   rounds: int = 5, progress: bool = True) -> dict[str, Any]:
    """Write the integer TVM export of ``model`` (a calibrated, eval-mode fake-quant sub-network of
    ``candidate``) into ``out`` (see the module docstring); returns ``deploy.json``'s content.

    ``trials``: MetaSchedule trials for a program the database lacks (0 = TVM's default lowering: correct, fast
    to build, slow to run). ``check_images``: float32 images compared with the NumPy reference (default: 8
    seeded random images)."""
    from hao._imports import lazy_import

    if not isinstance(trials, int) or trials < 0:
        raise ConfigError(f"--trials must be an int >= 0 (0 = no tuning), got {trials!r}.")
    from hao.latency.runlog import load_average, scheduling_priority
    from hao.latency.tvm_backend import default_target, missing_isa, pin_threads

    pin_threads(threads)
    tvm = lazy_import("tvm")
    from tvm.s_tir import meta_schedule as ms

    from hao.deploy.tvm_module import IntegerModule, build, relax_module, schedules
    from hao.latency.compiler import time_interleaved

    out = Path(out)
    space = space.resolve(candidate)  # a resolution-searching space's network takes inputs at its resolution
    net = integer_network(model, tuple(space.input_shape))
    net.save(out / "integer_network")
    target_dict, folder = _target(hardware, threads)
    target = tvm.target.Target(target_dict)
    missing = missing_isa(target)
    mod = relax_module(net, target)
    backend, database = None, None
    db_dir = (folder / "tuning_db") if folder is not None else (out / "tuning_db")
    here = not missing and target_dict.get("mcpu") == default_target(threads)["mcpu"]
    t0 = time.perf_counter()
    if here and trials > 0:
        from hao.latency.tvm_backend import TVMBackend

        backend = TVMBackend(target=target_dict, trials=trials, database_dir=db_dir, threads=threads, seed=seed)
        backend.open()
    elif db_dir.is_dir():
        database = ms.database.JSONDatabase(work_dir=str(db_dir), allow_missing=False)
    try:
        chosen, counts = schedules(mod, target, database, backend, progress=progress)
    finally:
        if backend is not None:
            backend.close()
    exe = build(mod, target, chosen)
    exe.export_library(str(out / "model.so"))
    build_s = round(time.perf_counter() - t0, 1)
    rng = np.random.default_rng(seed)
    x = check_images if check_images is not None else \
        rng.standard_normal((8, *space.input_shape)).astype(np.float32)
    ref = net.run(x)
    np.save(out / "sample_input.npy", np.ascontiguousarray(x[:1], np.float32))
    np.save(out / "sample_logits.npy", ref[:1].astype(np.float32))
    check: dict[str, Any] = {"run_here": not missing, "isa_missing_here": missing}
    timing: dict[str, Any] = {}
    if not missing:
        im = IntegerModule(exe, sample=x[:1])
        got = im.run_batch(x)
        diff = float(np.abs(got - ref).max())
        tol = 4 * float(np.finfo(np.float32).eps) * float(np.abs(ref).max())
        check.update({"images": int(x.shape[0]), "bit_exact_vs_numpy_reference": bool(np.array_equal(got, ref)),
                      "max_abs_diff": diff, "tolerance": tol,
                      "same_top1": bool(np.array_equal(got.argmax(1), ref.argmax(1))),
                      "note": "every integer stage is exact; the float32 logits (f32(acc) * scale + bias) may "
                              "differ by a few ulp where LLVM contracts the multiply-add into an FMA"})
        if not (diff <= tol and check["same_top1"]):
            raise ConfigError(f"the compiled module differs from the NumPy integer reference (max |diff| {diff:g} > "
                              f"{tol:g}, or another top-1); not exporting a wrong network. Please report this.")
        load0 = load_average()
        t = time_interleaved([im], passes=rounds)[0]
        timing = {k: t[k] for k in ("measured_ms", "std_ms", "session_medians_ms", "session_other_cores",
                                    "timed_quiet") if k in t}
        if t.get("timed_quiet") is False:
            import sys

            print(f"hao export: every timing session ran while other processes used the cores (other cores per "
                  f"session: {t.get('session_other_cores')}); the latency in deploy.json ({t.get('measured_ms'):.3f} "
                  f"ms) is inflated. Re-run run_example.py on a quiet machine (docs/measurement.md).", file=sys.stderr)
        timing.update({"protocol": f"time_evaluator, {rounds} sessions of 7 repeats (min_repeat_ms 20), lowest "
                                   "session median", "loadavg_start": load0, "loadavg_end": load_average(),
                       "priority": scheduling_priority(), "threads": threads})
    kernels = net.kernels()
    meta = {
        "format": "hao.tvm_export/1", "library": "model.so", "space": space.name,
        "candidate": candidate.to_dict(), "hardware": hardware, "target": target_dict, "threads": threads,
        "precision": "integer-only int8 (sub-8-bit layers as int8 codes), float32 logits",
        "input": {"name": "x", "shape": [1, *space.input_shape], "dtype": "float32",
                  "quantization": {"scale": net.input_grid.scale, "zero_point": net.input_grid.zero,
                                   "bits": net.input_grid.bits, "rounding": "round half to even of x / scale"}},
        "output": {"shape": [1, net.num_classes], "dtype": "float32", "meaning": "logits"},
        "layers": [{"name": o.name, "kind": o.kind, "inputs": o.inputs,
                    **({"out_grid": vars(o.out)} if o.out is not None else {})} for o in net.ops],
        "kernels": [k.short() for k in kernels],
        "schedules": {**counts, "database": str(db_dir), "tuning_trials": trials if backend is not None else 0},
        "predicted_ms": _predicted_ms(hardware, kernels, space.checkpoint_name) if folder is not None else None,
        "check": check, "timing": timing, "build_s": build_s,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.machine(),
    }
    (out / "deploy.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    (out / "run_example.py").write_text(EXAMPLE)
    return meta


def load_integer_network(folder: str | os.PathLike) -> IntegerNetwork:
    """The integer program of an export folder (``integer_network/``)."""
    return IntegerNetwork.load(Path(folder) / "integer_network")
