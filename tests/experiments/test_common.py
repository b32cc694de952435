import numpy as np

from tests.experiments.conftest import load_script


def test_latency_error_stats_and_pick_evenly():
    c = load_script("_common")
    st = c.latency_error_stats([1.0, 2.1, 3.0, 5.0], [1.0, 2.0, 3.5, 4.0])
    # errors: 0 %, +5 %, -14.3 %, +25 %
    assert st["n"] == 4
    assert st["share_within_10pct"] == 0.5
    assert np.isclose(st["median_abs_err_pct"], (5 + 100 * 0.5 / 3.5) / 2)
    assert np.isclose(st["max_abs_err_pct"], 25.0)
    assert c.pick_evenly(10, 3) == [0, 4, 9] or c.pick_evenly(10, 3) == [0, 5, 9]
    assert c.pick_evenly(3, 8) == [0, 1, 2]
    t = c.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40])
    assert t["tau"] == 1.0 and t["n"] == 4
    assert c.jsonable({"a": np.float64("nan"), "b": np.int64(3)}) == {"a": None, "b": 3}
