"""How far does the test split let Kendall τ go? Image sampling against a fitted accuracy model's ranking.

    python experiments/image_noise.py --test-seeds 1000,1100,1200 --out runs/image_noise
    python experiments/image_noise.py ... --smoke          # tiny CI setting (seconds of work)

Every candidate is measured as ``experiments/fit_accuracy_model.py`` measures its held-out candidates (the same
validation split, ``--calib-images`` training images for BatchNorm and activation ranges, the 10k test split,
float32 fake-quant unless ``--exact``), and which test images it classified right is kept
(``OUT/s<seed>_<i>.npz``, one file per candidate: an interrupted run resumes). Then, per seed and over all of them:

* the fitted model's τ (``--model-dir``, default the committed one), its bootstrap SE over candidates, and its
  spread over resamples of the *images* (``hao.stats.image_sampling``);
* the same for the best counting baseline (−share of 2-bit layers);
* ``pair_sd``: the standard error of two candidates' accuracy difference from the images drawn (they share
  most errors, so it is far below the binomial SE of one accuracy);
* the **image ceiling**: the τ a predictor that knew every candidate's accuracy on the whole image population
  would reach against one measurement on these images — and with the calibration noise (``--extra-sd``,
  default: the model folder's test–retest pairs, ``retest.jsonl`` against ``test.jsonl``) added.

Writes ``OUT/report.json``. docs/accuracy_model.md, "Three more fresh seeds".
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_accuracy_model import held_out_splits, share_2bit  # noqa: E402
from proxy_fidelity import make_candidates  # noqa: E402


def retest_sd(folder: Path) -> float:
    """Per-measurement calibration noise (points): SD of test − retest accuracy over √2 (0 without the files)."""
    rows = {}
    for name in ("test.jsonl", "retest.jsonl"):
        if not (folder / name).is_file():
            return 0.0
        rows[name] = {}
        for line in (folder / name).read_text().splitlines():
            r = json.loads(line)["row"]
            rows[name][r["candidate"]] = r["accuracy"]
    d = [rows["test.jsonl"][k] - v for k, v in rows["retest.jsonl"].items() if k in rows["test.jsonl"]]
    return float(np.std(d, ddof=1) / np.sqrt(2)) if len(d) > 2 else 0.0


def measure(space, net, cands, calib, test_b, out: Path, seed: int, exact: bool, progress: bool) -> np.ndarray:
    """``(len(cands), n_images)`` bools: which test images each candidate got right (cached per candidate)."""
    from hao.train.evaluate import evaluate_full, prepare_subnet

    rows = []
    for i, c in enumerate(cands):
        f = out / f"s{seed}_{i:03d}.npz"
        if f.is_file():
            z = np.load(f)
            if str(z["candidate"]) != c.to_json():
                raise SystemExit(f"{f} holds another candidate than seed {seed} #{i}; use a fresh --out.")
            rows.append(np.unpackbits(z["correct"])[:int(z["n_images"]) if "n_images" in z else None].astype(bool))
            continue
        t0 = time.time()
        r = evaluate_full(prepare_subnet(space.build(c, net), calib, channels_last=True), test_b, exact=exact,
                          per_example=True)
        np.savez_compressed(f, correct=np.packbits(r.correct), n_images=r.n, accuracy=100.0 * r.accuracy,
                            candidate=np.array(c.to_json()))
        rows.append(r.correct)
        if progress:
            print(f"seed {seed} #{i}: {100 * r.accuracy:.2f}% ({time.time() - t0:.1f} s, 1-min load "
                  f"{os.getloadavg()[0]:.2f})", flush=True)
    n = {len(r) for r in rows}
    if len(n) != 1:
        raise SystemExit(f"cached candidates of seed {seed} were measured on different image counts {sorted(n)}.")
    return np.array(rows)


def judge(correct: np.ndarray, scores: dict[str, np.ndarray], extra_sd: float, boot: int, seed: int) -> dict:
    from hao.stats import image_sampling, kendall_tau

    acc = 100.0 * correct.mean(axis=1)
    out: dict[str, Any] = {"n": int(len(acc)), "accuracy_sd": float(np.std(acc, ddof=1))}
    for name, s in scores.items():
        im = image_sampling(correct, s, boot=boot, seed=seed)
        out[name] = {"tau": im["tau"], "se_candidates": kendall_tau(s, acc, seed=seed)["se_bootstrap"],
                     "sd_images": im["tau_image_sd"]}
    quiet = image_sampling(correct, boot=boot, seed=seed)
    noisy = image_sampling(correct, boot=boot, seed=seed, extra_sd=extra_sd)
    out.update(pair_sd=quiet["pair_sd"], ceiling_images=quiet["ceiling_tau"],
               ceiling_images_sd=quiet["ceiling_tau_sd"], ceiling_images_and_calibration=noisy["ceiling_tau"])
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoint-dir", default=None, help="supernet.pt (default: the space's committed checkpoint)")
    p.add_argument("--model-dir", default=None, help="a fitted accuracy model (default: the committed one)")
    p.add_argument("--space", default="mbconv-fmnist")
    p.add_argument("--data", default=None)
    p.add_argument("--test-seeds", default="1000")
    p.add_argument("--n-test", type=int, default=60)
    p.add_argument("--val-images", type=int, default=5000)
    p.add_argument("--calib-images", type=int, default=2000)
    p.add_argument("--test-images", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0, help="split and calibration seed (as fit_accuracy_model.py)")
    p.add_argument("--extra-sd", type=float, default=None, help="calibration noise, points (default: retest)")
    p.add_argument("--boot", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--exact", action="store_true", help="the integer path (default: float32, as the fit)")
    p.add_argument("--smoke", action="store_true", help="tiny settings for CI")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.smoke:
        a.n_test, a.calib_images, a.test_images, a.boot = 6, 32, 64, 20
    import torch

    import hao
    from hao.data import loader
    from hao.proxy import default_checkpoint_dir
    from hao.proxy.calibrated import CalibratedAccuracyModel, model_folder
    from hao.train import load_supernet

    t0 = time.time()
    torch.set_num_threads(a.threads)
    space = hao.get_space(a.space)
    folder = Path(a.checkpoint_dir) if a.checkpoint_dir else default_checkpoint_dir(space.checkpoint_name)
    mfolder = Path(a.model_dir) if a.model_dir else model_folder(space.name)
    if mfolder is None:
        raise SystemExit(f"no fitted accuracy model for {space.name}; pass --model-dir (a folder written by "
                         "experiments/fit_accuracy_model.py).")
    model = CalibratedAccuracyModel.from_checkpoint(space, mfolder)
    extra_sd = retest_sd(mfolder) if a.extra_sd is None else float(a.extra_sd)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    net = load_supernet(space, folder / "supernet.pt")
    _, _, test, calib = held_out_splits(a)
    test_b = list(loader(test, 500))
    load = [os.getloadavg()[0]]
    seeds = [int(s) for s in str(a.test_seeds).split(",") if s.strip()]
    per_seed, taus = {}, {"model": [], "-share of 2-bit layers": []}
    for s in seeds:
        cands = [c for k, c in make_candidates(space, a.n_test, 0, 0, s) if k == "joint"]
        correct = measure(space, net, cands, calib, test_b, out, s, a.exact, not a.no_progress)
        scores = {"model": model.predict(cands)[0], "-share of 2-bit layers": -share_2bit(space, cands)}
        per_seed[str(s)] = judge(correct, scores, extra_sd, a.boot, a.seed)
        for k in taus:
            taus[k].append(per_seed[str(s)][k]["tau"])
        load.append(os.getloadavg()[0])
    mean = {k: {"mean_tau": float(np.mean(v)),
                "se": float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None} for k, v in taus.items()}
    for key in ("ceiling_images", "ceiling_images_and_calibration", "pair_sd"):
        mean[key] = float(np.mean([r[key] for r in per_seed.values()]))
    report = {"settings": vars(a), "model_dir": str(mfolder), "extra_sd": extra_sd, "per_seed": per_seed,
              "over_seeds": mean, "wall_s": time.time() - t0, "loadavg": [min(load), max(load)]}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    if not a.no_progress:
        print(json.dumps(mean, indent=1))
    return report


if __name__ == "__main__":
    main()
