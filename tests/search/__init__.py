"""Tests of hao.search, hao.pareto, the search CLI and the HAWQ-V3 experiment."""
