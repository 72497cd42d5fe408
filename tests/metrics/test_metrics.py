"""The metrics: hand-checked values on constructed data, then the real classifier on MNIST."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException

from gan.data import FashionMNISTDataModule, MNISTDataModule
from gan.errors import UserError
from gan.evaluate import Args, evaluate
from gan.metrics import extractor
from gan.metrics.extractor import Recipe, cache_key, classifier_for
from gan.metrics.scores import fid, inception_score, kid, mode_coverage, neighbourhoods, score
from gan.training.fit import fit, objective
from tests.helpers import ROOT, events, make_cfg, quick, random_inception_weights, write_idx


def gaussian(n: int, mean: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    return mean + std * torch.randn(n, len(mean), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_identical_sets_score_zero_fid_and_kid():
    x = gaussian(2000, torch.zeros(8, dtype=torch.float64), 1.0, 0)
    assert fid(x, x) == pytest.approx(0, abs=1e-6)
    # KID's subsets of each side are drawn independently: an unbiased estimate of 0, not exactly 0
    assert abs(kid(x, x)) < 0.02 * kid(x, x + 0.5)


def test_fid_of_two_gaussians_matches_the_closed_form():
    dim = 4
    mu1, mu2 = torch.zeros(dim, dtype=torch.float64), torch.full((dim,), 0.5, dtype=torch.float64)
    a, b = gaussian(50_000, mu1, 1.0, 1), gaussian(50_000, mu2, 2.0, 2)
    closed_form = float(((mu1 - mu2) ** 2).sum()) + dim * (1.0 - 2.0) ** 2  # |dmu|^2 + tr(S1 + S2 - 2 sqrt(S1 S2))
    assert fid(a, b) == pytest.approx(closed_form, rel=0.03)
    assert kid(a, b) > 10 * abs(kid(a, gaussian(50_000, mu1, 1.0, 3)))


def test_inception_score_is_the_number_of_equally_used_confident_classes():
    confident = torch.eye(5).repeat(200, 1) * 50  # 1000 samples, 5 classes used equally, each certain
    assert inception_score(confident, splits=1) == pytest.approx(5, rel=1e-6)
    assert inception_score(confident) == pytest.approx(5, rel=0.03)  # 10 random splits: classes not quite equal in each
    assert inception_score(torch.zeros(1000, 5)) == pytest.approx(1, rel=1e-6)  # no confidence at all


def precision_recall(*args, **kwargs) -> tuple[float, float]:
    found = neighbourhoods(*args, **kwargs)
    return found["precision"], found["recall"]


def test_precision_and_recall_on_point_clouds():
    real = torch.rand(2000, 2, generator=torch.Generator().manual_seed(0))  # unit square
    same = torch.rand(2000, 2, generator=torch.Generator().manual_seed(1))
    corner = same * 0.2  # only one corner of the square
    far = same + 10
    p, r = precision_recall(real, same)
    assert p > 0.9 and r > 0.9
    p, r = precision_recall(real, corner)
    assert p > 0.95 and r < 0.1  # realistic but not diverse
    assert precision_recall(real, far) == (0.0, 0.0)


def test_precision_and_recall_are_the_definition_on_the_full_distance_matrix():
    rng = torch.Generator().manual_seed(0)
    real, fake = torch.randn(700, 5, generator=rng), torch.randn(600, 5, generator=rng) * 1.3 + 0.2
    k = 3

    def radii(x):  # k-th nearest other point: index k after sorting (index 0 is the point itself)
        return torch.cdist(x, x).sort(dim=1).values[:, k]

    d = torch.cdist(fake, real)
    precision = (d <= radii(real)[None, :]).any(dim=1).float().mean().item()
    recall = (d <= radii(fake)[:, None]).any(dim=0).float().mean().item()
    assert 0.1 < precision < 1 and 0.1 < recall < 1  # a case where both can be wrong
    assert precision_recall(real, fake, k, chunk=256) == pytest.approx((precision, recall), abs=2e-3)
    assert precision_recall(real, fake, k, real_radii=radii(real), chunk=256) == precision_recall(real, fake, k, chunk=256)


def test_mode_coverage_counts_classes_with_a_quarter_of_their_share():
    labels = torch.tensor([0] * 50 + [1] * 45 + [2] * 4 + [3] * 1)  # 4 classes, fair share 25 each
    histogram, covered, kl = mode_coverage(torch.nn.functional.one_hot(labels, 4).float())
    assert histogram.tolist() == pytest.approx([0.5, 0.45, 0.04, 0.01])
    assert covered == 2  # 0.04 < 0.25 / 4
    assert kl == pytest.approx(sum(h * math.log(4 * h) for h in (0.5, 0.45, 0.04, 0.01)))
    assert mode_coverage(torch.eye(4).repeat(10, 1))[1:] == (4, pytest.approx(0))


def test_cache_key_changes_with_dataset_shape_and_recipe():
    base = cache_key("MNIST", (1, 28, 28), 10, Recipe())
    assert base == cache_key("MNIST", (1, 28, 28), 10, Recipe())
    others = {cache_key("FashionMNIST", (1, 28, 28), 10, Recipe()), cache_key("MNIST", (1, 32, 32), 10, Recipe()),
              cache_key("MNIST", (1, 28, 28), 10, Recipe(epochs=1))}
    assert base not in others and len(others) == 3


def test_fashion_mnist_classifier_trains_from_idx_files_then_comes_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GAN_CACHE_DIR", str(tmp_path / "cache"))
    for split, n in (("train", 256), ("test", 64)):
        write_idx(tmp_path / "data" / "FashionMNIST" / "raw", n, split)
    dm = FashionMNISTDataModule(root=str(tmp_path / "data"), download=False)
    net, acc = classifier_for(dm, Recipe(epochs=1, batch_size=32))
    assert 0 <= acc <= 1 and list((tmp_path / "cache").glob("FashionMNIST-1x28x28-*.pt"))
    monkeypatch.setattr(extractor, "fit", lambda *a, **k: pytest.fail("trained again instead of using the cache"))
    again, acc_again = classifier_for(dm, Recipe(epochs=1, batch_size=32))
    assert acc_again == acc
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))


@pytest.fixture(scope="module")
def mnist_features(mnist_root, mnist_classifier):
    net, acc = mnist_classifier
    dm = MNISTDataModule(root=mnist_root)
    (train_images, train_labels), (test_images, _) = dm.split(train=True), dm.split(train=False)
    return {"net": net, "accuracy": acc, "test": net.features(test_images), "train": net.features(train_images[:10_000]),
            "train_images": train_images, "train_labels": train_labels}


@pytest.mark.slow
def test_classifier_reaches_99_percent_on_mnist(mnist_features):
    assert mnist_features["accuracy"] >= 0.99


@pytest.mark.slow
def test_real_data_floor_is_small_and_noise_scores_far_worse(mnist_features):
    floor = score(mnist_features["test"], mnist_features["train"])
    noise = score(mnist_features["test"], mnist_features["net"].features(torch.rand(10_000, 1, 28, 28) * 2 - 1))
    assert floor["precision"] > 0.8 and floor["recall"] > 0.8  # held-out real data looks real and covers the data
    assert floor["modes_covered"] == 10 and floor["kl_uniform"] < 0.01 and floor["is"] > 9
    assert noise["precision"] < 0.05  # in the conv feature space noise lands in no real k-NN ball
    assert noise["fid"] > 100 * floor["fid"] and noise["kid"] > 100 * floor["kid"] and noise["is"] < 2


@pytest.mark.slow
def test_one_repeated_digit_covers_one_mode_and_no_recall(mnist_features):
    one = mnist_features["train_images"][mnist_features["train_labels"] == 3][:1]
    result = score(mnist_features["test"], mnist_features["net"].features(one.repeat(2000, 1, 1, 1)))
    assert result["modes_covered"] == 1 and result["recall"] < 0.01
    assert result["kl_uniform"] == pytest.approx(math.log(10), rel=1e-6)


def test_the_test_splits_features_are_computed_once_per_dataset_and_then_read(mnist_classifier, mnist_root, monkeypatch):
    from gan.data import MNISTDataModule
    from gan.metrics.evaluator import Evaluator

    first = Evaluator(MNISTDataModule(root=mnist_root), "classifier100_test")
    assert {"conv", "hidden", "logits", "radii_k3"} <= set(first.real)
    monkeypatch.setattr(Evaluator, "features", lambda *a: pytest.fail("the test split was extracted again"))
    second = Evaluator(MNISTDataModule(root=mnist_root), "classifier100_test")
    assert all(torch.equal(first.real[key], second.real[key]) for key in first.real)


@pytest.fixture(scope="module")
def evaluated_run(mnist_classifier, tmp_path_factory):

    run_dir = tmp_path_factory.mktemp("evaluated")
    cfg = make_cfg(*quick("eval_every=6", "callbacks.metrics.n=500", "optimized_metric=metrics/fid"), run_dir=run_dir)
    metrics = fit(cfg)
    return run_dir, objective(cfg, metrics), metrics


@pytest.mark.slow
def test_eval_callback_logs_metrics_keeps_the_best_checkpoint_and_returns_the_objective(evaluated_run):

    run_dir, fid_value, metrics = evaluated_run
    acc = events(run_dir)
    for tag in ("fid", "kid", "is", "precision", "recall", "density", "coverage", "modes_covered", "kl_uniform"):
        assert [e.step for e in acc.Scalars(f"metrics/classifier500_test/{tag}")] == [6, 12]  # the protocol in the tag
    assert not [t for t in acc.Tags()["scalars"] if t.startswith("metrics/") and t.count("/") != 2]
    assert acc.Scalars("metrics/classifier500_test/fid")[-1].value == pytest.approx(fid_value, rel=1e-6)
    assert (run_dir / "checkpoints" / "best_fid.ckpt").exists()
    best = torch.load(run_dir / "checkpoints" / "best_fid.ckpt", weights_only=True)
    fids = {e.step: e.value for e in acc.Scalars("metrics/classifier500_test/fid")}
    assert best["global_step"] == min(fids, key=fids.get)
    assert metrics["metrics_protocol"] == "classifier500_test"  # status.json's, beside metrics/fid
    floor = metrics["metrics_floor"]  # real images scored the same way: what "good" reads here
    assert floor["fid"] < min(fids.values()) and floor["modes_covered"] == 10
    assert [(e.step, e.value) for e in acc.Scalars("floor/classifier500_test/fid")] == [
        (6, pytest.approx(floor["fid"])), (12, pytest.approx(floor["fid"]))]  # a flat line beside the FID's curve
    assert metrics["metrics/fid"] == pytest.approx(fid_value, rel=1e-6) and "metrics/density" in metrics


@pytest.mark.slow
def test_evaluate_is_repeatable_and_generate_writes_png_and_npy(evaluated_run, tmp_path):
    run_dir, _, _ = evaluated_run
    first, second = (evaluate(Args(ckpt=str(run_dir), n=300, grid=str(tmp_path / f"nearest{i}.png"))) for i in (1, 2))
    assert {**first, "memorisation": None} == {**second, "memorisation": None}
    assert first["n"] == 300 and first["floor"]["n"] == 300 and first["protocol"] == "classifier300_test"
    assert set(first) == {"fid", "kid", "is", "precision", "recall", "density", "coverage", "modes_covered", "kl_uniform",
                          "n", "protocol", "features", "floor", "memorisation"}
    assert first["features"].startswith("classifier-MNIST-1x28x28-") and first["floor"]["protocol"] == first["protocol"]
    assert (tmp_path / "nearest1.png").stat().st_size > 0 and first["memorisation"]["n"] == 300
    cli = subprocess.run([sys.executable, "-m", "gan.evaluate", f"ckpt={run_dir}", "best=true", "n=300"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert json.loads(cli.stdout.strip().splitlines()[-1])["n"] == 300
    for out in ("grid.png", "samples.npy"):
        made = subprocess.run([sys.executable, "-m", "gan.generate", f"ckpt={run_dir}", "n=16", f"out={tmp_path / out}"],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert made.returncode == 0, made.stderr[-2000:]
    samples = np.load(tmp_path / "samples.npy")
    assert samples.shape == (16, 1, 28, 28) and samples.dtype == np.float32 and samples.min() >= -1 and samples.max() <= 1
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_optimized_metric_must_be_one_the_run_reports(tmp_path):

    with pytest.raises(UserError, match="optimized_metric=metrics/fid is not reported.*eval_every > 0"):
        fit(make_cfg(*quick("optimized_metric=metrics/fid"), run_dir=tmp_path))
    with pytest.raises(UserError, match="optimized_metric=train/nosuch is not reported"):
        fit(make_cfg(*quick("optimized_metric=train/nosuch"), run_dir=tmp_path))


@pytest.mark.slow
def test_health_monitor_flags_low_mode_coverage(mnist_classifier, tmp_path, caplog):
    cfg = make_cfg(*quick("eval_every=6", "callbacks.metrics.n=200", "callbacks.health.min_modes=11"), run_dir=tmp_path)
    with caplog.at_level("WARNING", logger="gan.callbacks"):
        fit(cfg)
    assert sum("fewer than 11 classes" in r.getMessage() for r in caplog.records) == 1
    assert [e.value for e in events(tmp_path).Scalars("warnings/low_modes")] == [1.0, 1.0]
    # judged only from 3/4 of the run on: the evaluations at 6 and 12 of 24 say nothing, the one at 18 stops the run
    cfg = make_cfg(*quick("eval_every=6", "callbacks.metrics.n=200", "callbacks.health.min_modes=11",
                          "callbacks.health.warmup=0.75", "callbacks.health.action=stop", "trainer.max_steps=24"),
                   run_dir=tmp_path / "later")
    metrics = fit(cfg)
    assert [e.value for e in events(tmp_path / "later").Scalars("warnings/low_modes")] == [0.0, 0.0, 1.0]
    assert metrics["global_step"] == 18 and metrics["stop"]["rule"] == "health.low_modes"


def test_inception_features_without_weights_stop_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("GAN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    # Hydra wraps what a config-built callback raises in its own (also traceback-free) error
    for weights in (f"{tmp_path}/none.pth", "null"):
        with pytest.raises(InstantiationException, match="need their weights on disk.*inception_weights=download.*"
                                                         "classifier10k_test"):
            fit(make_cfg(*quick("eval_every=6", "callbacks.metrics.protocol=fid10k_test",
                                f"callbacks.metrics.inception_weights={weights}"), run_dir=tmp_path / "run"))
        assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_inception_features_from_a_local_weights_file(mnist_features, tmp_path):
    from gan.metrics.inception import InceptionFeatures

    inception = InceptionFeatures(str(random_inception_weights(tmp_path / "inception.pth")))
    real_images = mnist_features["train_images"][:12]
    feats = inception.features(real_images)
    assert feats["hidden"].shape == (12, 2048) and feats["logits"].shape == (12, 1008)
    own = mnist_features["net"].features(real_images)
    real = {**feats, "class_logits": own["class_logits"]}
    noise = torch.rand(12, 1, 28, 28) * 2 - 1
    fake = {**inception.features(noise), "class_logits": mnist_features["net"].features(noise)["class_logits"]}
    result = score(real, fake)
    assert all(math.isfinite(result[key]) for key in ("fid", "kid", "is", "precision", "recall", "kl_uniform"))
    assert score(real, real)["fid"] == pytest.approx(0, abs=1e-3)


def test_scoring_raises_no_warnings_that_do_not_concern_the_user():
    import warnings

    rng = torch.Generator().manual_seed(0)
    features = {"conv": torch.randn(300, 8, generator=rng), "hidden": torch.randn(300, 4, generator=rng),
                "logits": torch.randn(300, 10, generator=rng)}
    features["class_logits"] = features["logits"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        score(features, {k: v + 0.1 for k, v in features.items()})
    assert not [str(w.message) for w in caught if "torchmetrics" in w.filename or "Metric" in str(w.message)]


@pytest.mark.slow
def test_a_conditional_run_logs_intra_fid_and_evaluate_lists_one_fid_per_class(mnist_classifier, tmp_path):
    cfg = make_cfg(*quick("model.conditional=true", "eval_every=12", "callbacks.metrics.n=500"), run_dir=tmp_path)
    metrics = fit(cfg)
    logged = events(tmp_path).Scalars("metrics/classifier500_test/intra_fid")
    assert [e.step for e in logged] == [12] and logged[0].value == pytest.approx(metrics["metrics/intra_fid"], rel=1e-6)
    result = evaluate(Args(ckpt=str(tmp_path), n=500, memorisation=0))
    per_class = result["fid_per_class"]
    assert sorted(per_class) == list(range(10))  # 50 samples of each digit, against that digit's test images
    assert result["intra_fid"] == pytest.approx(np.mean(list(per_class.values())), rel=1e-12)
    assert result["intra_fid"] > result["floor"]["intra_fid"] > 0  # the floor: training digits against test digits
    assert "memorisation" not in result
