"""Compile a kernel program with TVM's default schedule and run it on this CPU (shared by the program tests)."""
from __future__ import annotations

import numpy as np


def run_program(prog, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """``(output, reference, inputs)`` of ``prog`` (a ``KernelProgram``) on seeded inputs."""
    import tvm

    xs = prog.make_inputs(np.random.default_rng(seed))
    lib = tvm.compile(tvm.IRModule({"main": prog.func}), target=tvm.target.Target({"kind": "llvm"}))
    dev = tvm.cpu()
    out = tvm.runtime.tensor(np.zeros(prog.out_shape, prog.out_dtype), dev)
    lib["main"](*[tvm.runtime.tensor(np.ascontiguousarray(x), dev) for x in xs], out)
    return out.numpy(), prog.reference(xs), xs
