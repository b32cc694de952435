"""hao.stats: image_sampling against brute force and against a simulated image population."""
import numpy as np
import pytest
from scipy.stats import kendalltau

from hao.stats import image_sampling, kendall_tau


def test_pair_sd_is_the_brute_force_pair_noise():
    rng = np.random.default_rng(0)
    base = rng.random(500) < 0.9                      # networks share most errors, as real ones do
    c = np.array([base ^ (rng.random(500) < f) for f in (0.01, 0.03, 0.05, 0.08)])
    sds = [100 * np.sqrt(np.var(c[i].astype(float) - c[k]) / 500) for i in range(4) for k in range(i + 1, 4)]
    assert image_sampling(c, boot=0)["pair_sd"] == pytest.approx(np.median(sds), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ceiling_matches_a_simulated_population(seed):
    # candidates with known population accuracies p, each image an independent draw: the tau of p against one
    # measurement on n images, averaged over many draws, is what the bootstrap estimates from one draw
    rng = np.random.default_rng(seed)
    p, n = np.linspace(0.85, 0.90, 40), 2000

    def draw():
        return rng.random((40, n)) < p[:, None]

    truth = np.mean([kendalltau(p, draw().mean(1)).statistic for _ in range(200)])
    r = image_sampling(draw(), predictions=p, boot=100, seed=seed)
    assert truth == pytest.approx(0.74, abs=0.02)
    assert r["ceiling_tau"] == pytest.approx(truth, abs=0.05)
    assert r["pair_sd"] == pytest.approx(100 * np.sqrt(2 * 0.875 * 0.125 / n), rel=0.05)
    assert r["tau"] < 1.0 and r["tau_image_sd"] > 0.01


def test_extra_noise_lowers_the_ceiling_and_identical_candidates_rank_by_it_alone():
    rng = np.random.default_rng(3)
    c = rng.random((30, 3000)) < np.linspace(0.8, 0.9, 30)[:, None]
    quiet = image_sampling(c, boot=50, seed=0)["ceiling_tau"]
    noisy = image_sampling(c, boot=50, seed=0, extra_sd=1.0)["ceiling_tau"]
    assert noisy < quiet - 0.05
    same = np.tile(c[:1], (5, 1))
    r = image_sampling(same, boot=5)
    assert r["pair_sd"] == 0.0


@pytest.mark.parametrize("bad, match", [(np.ones(5), "shape"), (np.full((3, 4), 2), "0/1")])
def test_bad_input_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        image_sampling(bad)


def test_kendall_tau_bootstrap_is_seeded():
    x = np.arange(20.0)
    y = x + np.random.default_rng(0).normal(0, 5, 20)
    a, b = kendall_tau(x, y, seed=4), kendall_tau(x, y, seed=4)
    assert a == b and a["tau"] == pytest.approx(kendalltau(x, y).statistic)
