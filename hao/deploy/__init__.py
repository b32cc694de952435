"""Deployment: a searched candidate as the integer program that runs (:mod:`hao.deploy.graph`) and as a TVM module
built from the latency table's own kernel programs (:mod:`hao.deploy.tvm_module`). See docs/deployment.md."""
from hao.deploy.graph import Grid, IntegerNetwork, Op, integer_network

__all__ = ["Grid", "IntegerNetwork", "Op", "integer_network"]
