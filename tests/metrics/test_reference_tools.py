"""The project's Inception numbers against the reference tools' own entry points, on the same
random-but-fixed Inception weights (the real file cannot be fetched here) and the same PNG files.

- torch-fidelity: FID, KID and IS agree (its resize, `legacy`, is the one the project uses).
- clean-fid: FID agrees with `protocol=clean_fid...` (its resize is the one the project calls
  `clean`; its network is given the same weights through `custom_feat_extractor`).
- pytorch-fid: its network is the same (its features equal the project's on the inputs it
  prepares), but its preprocessing is not the TF code's: PyTorch's bilinear resize (half-pixel
  centres) instead of TF1's, and (x/255)*2-1 instead of (x-128)/128. So its FID differs by a
  small amount, shown and bounded here; reference statistics pass between the tools exactly
  (test_protocols.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gan.metrics.inception import InceptionFeatures
from gan.metrics.scores import fid, frechet, inception_score, kid, statistics
from gan.metrics.stats_files import read_stats
from tests.helpers import random_inception_weights

pytestmark = pytest.mark.slow
N = 24  # images per set: Inception at 299x299 runs a few images a second on a small CPU


def image_set(seed: int, shift: int) -> torch.Tensor:
    """Blobs on a dark ground, a little different per set: 32x32 RGB uint8."""
    rng = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    centres = torch.rand(N, 3, 2, generator=rng) * 20 + 6 + shift
    blobs = torch.exp(-((xx - centres[..., 0, None, None]) ** 2 + (yy - centres[..., 1, None, None]) ** 2) / 30)
    noise = torch.rand(N, 3, 32, 32, generator=rng) * 40
    return (blobs * 215 + noise).clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference-tools")
    weights = random_inception_weights(folder / "pt_inception-2015-12-05-6726825d.pth")
    images = {"a": image_set(0, 0), "b": image_set(1, 4)}
    for name, batch in images.items():
        (folder / name).mkdir()
        for i, image in enumerate(batch):
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / name / f"{i:03d}.png")
    return folder, weights, images


def project(weights, images, resize):
    inception = InceptionFeatures(str(weights), resize)
    a, b = (inception.features(images[k]) for k in ("a", "b"))
    return inception, {"fid": fid(a["hidden"], b["hidden"]), "kid": kid(a["hidden"], b["hidden"], subset_size=N),
                       "is": inception_score(a["logits"], splits=1)}


def test_torch_fidelity_gives_the_projects_fid_kid_and_is(sets):
    torch_fidelity = pytest.importorskip("torch_fidelity")
    folder, weights, images = sets
    _, ours = project(weights, images, "legacy")
    theirs = torch_fidelity.calculate_metrics(input1=str(folder / "a"), input2=str(folder / "b"), cuda=False, fid=True,
                                              kid=True, isc=True, kid_subset_size=N, isc_splits=1, verbose=False,
                                              feature_extractor_weights_path=str(weights), cache=False)
    assert ours["fid"] > 0.01  # the sets differ: a number that could be wrong
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-3)
    assert ours["kid"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-3)
    assert ours["is"] == pytest.approx(theirs["inception_score_mean"], rel=1e-3)


def test_clean_fid_gives_the_projects_clean_fid(sets):
    cleanfid = pytest.importorskip("cleanfid.fid")
    folder, weights, images = sets
    inception, ours = project(weights, images, "clean")

    def extractor(batch: torch.Tensor) -> torch.Tensor:  # what clean-fid hands its network: 299x299 floats in [0, 255]
        return inception.network(batch.float())[0]

    theirs = cleanfid.compute_fid(str(folder / "a"), str(folder / "b"), mode="clean", custom_feat_extractor=extractor,
                                  num_workers=0, batch_size=8, device=torch.device("cpu"), verbose=False)
    assert ours["fid"] == pytest.approx(theirs, rel=1e-3)
    _, legacy = project(weights, images, "legacy")
    assert abs(legacy["fid"] - ours["fid"]) > 1e-3 * ours["fid"]  # the two resizes really differ


def test_pytorch_fid_runs_the_same_network_and_differs_only_by_its_preprocessing(sets, monkeypatch):
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    from pytorch_fid import inception as pf

    folder, weights, images = sets
    monkeypatch.setattr(pf, "load_state_dict_from_url", lambda *a, **k: torch.load(weights, weights_only=True))
    theirs = fid_score.calculate_fid_given_paths([str(folder / "a"), str(folder / "b")], 8, "cpu", 2048, num_workers=0)
    inception, ours = project(weights, images, "legacy")
    # the same network: pytorch-fid's preprocessing, then the project's layers, gives pytorch-fid's FID
    model = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    as_pytorch_fid = {}
    for name in ("a", "b"):
        x = torch.nn.functional.interpolate(images[name].float() / 255, size=(299, 299), mode="bilinear", align_corners=False)
        with torch.no_grad():
            theirs_features = model(x)[0].flatten(1)
            ours_features = inception.network((2 * x - 1) * 128 + 128)[0]  # undo the project's (x - 128) / 128
        assert torch.allclose(theirs_features, ours_features, rtol=1e-4, atol=1e-5)
        as_pytorch_fid[name] = ours_features
    assert fid(as_pytorch_fid["a"], as_pytorch_fid["b"]) == pytest.approx(theirs, rel=1e-3)
    # statistics pytorch-fid writes (its --save-stats) are scored by the project to its FID
    fid_score.save_fid_stats([str(folder / "a"), str(folder / "a_stats.npz")], 8, "cpu", 2048, num_workers=0)
    expected = {"features": inception.identity, "resize": "legacy"}
    mu, sigma, said = read_stats(folder / "a_stats.npz", 2048, expected)
    assert said == {} and frechet(mu, sigma, *statistics(as_pytorch_fid["b"])) == pytest.approx(theirs, rel=1e-3)
    # its preprocessing moves the number, a little
    assert abs(ours["fid"] - theirs) > 1e-4 * theirs and ours["fid"] == pytest.approx(theirs, rel=0.25)


def test_the_weights_are_found_under_either_name_in_the_caches(sets, tmp_path, monkeypatch):
    from gan.metrics import inception

    _, weights, _ = sets
    monkeypatch.setenv("GAN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch_fidelity_name = tmp_path / "hub" / "checkpoints" / inception.NAMES[1]
    torch_fidelity_name.write_bytes(weights.read_bytes())
    assert inception.find_weights(None) == torch_fidelity_name
    found = InceptionFeatures(None)
    assert found.identity == InceptionFeatures(str(weights)).identity  # the content, not the name, identifies it
    assert np.isfinite(found.features(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))["hidden"].numpy()).all()
