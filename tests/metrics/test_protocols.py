"""Evaluation protocols, reference statistics files, density/coverage, intra-FID and the memorisation check."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from gan.data import to_unit
from gan.errors import UserError
from gan.metrics import logged_tag, short_tag
from gan.metrics.memorisation import memorisation, nearest
from gan.metrics.protocols import parse
from gan.metrics.scores import fid, frechet, intra_fid, neighbourhoods, statistics
from gan.metrics.stats_files import read_stats, write_stats


@pytest.mark.parametrize(("name", "n", "reference", "features", "resize"), [
    ("fid50k_train", 50_000, "train", "inception", "legacy"),
    ("fid10k_test", 10_000, "test", "inception", "legacy"),
    ("clean_fid50k_train", 50_000, "train", "inception", "clean"),
    ("classifier10k_test", 10_000, "test", "classifier", "none"),
    ("classifier1500_test", 1500, "test", "classifier", "none"),
])
def test_a_protocol_name_fixes_count_reference_network_and_resize_and_reads_back(name, n, reference, features, resize):
    protocol = parse(name)
    assert (protocol.n, protocol.reference, protocol.features, protocol.resize) == (n, reference, features, resize)
    assert protocol.name == name and name in protocol.describe()


def test_another_sample_count_renames_the_protocol_so_it_cannot_pass_for_the_standard_one():
    assert parse("fid10k_test", n=2000).name == "fid2k_test"
    assert parse("fid50k_train", n=1234).name == "fid1234_train"
    assert parse("classifier10k_test", n=10_000).name == "classifier10k_test"


@pytest.mark.parametrize("bad", ["fid", "fid50k", "fid50k_val", "kid10k_test", "fid-10k_test", ""])
def test_a_bad_protocol_name_is_one_paragraph_saying_how_names_read(bad):
    with pytest.raises(UserError, match=r"protocol=.* is not an evaluation protocol: a protocol reads "
                                        r"<family><count>_<reference>.*fid50k_train"):
        parse(bad)


def test_logged_tags_carry_the_protocol_and_read_back_as_the_runs_own():
    assert logged_tag("fid", "fid50k_train") == "metrics/fid50k_train/fid"
    assert short_tag("metrics/fid50k_train/fid") == ("metrics/fid", "fid50k_train")
    assert short_tag("metrics/fid") == ("metrics/fid", None)  # a run from before protocols
    assert short_tag("loss/d") == ("loss/d", None)


def test_density_and_coverage_are_the_papers_definitions_on_a_hand_made_set():
    real = torch.arange(10.0)[:, None]  # 0, 1, ..., 9 on a line: with k=1 every ball has radius 1
    fake = torch.tensor([[0.5], [100.0]])  # in the balls of 0 and 1; in none
    found = neighbourhoods(real, fake, k=1)
    assert found["density"] == pytest.approx((2 + 0) / (1 * 2))  # balls holding each fake, over k * M
    assert found["coverage"] == pytest.approx(2 / 10)  # reals 0 and 1 have a fake in their ball
    assert found["precision"] == pytest.approx(1 / 2)
    crowded = torch.full((4, 1), 4.5)  # every fake in the balls of 4 and 5: density 2, coverage 0.2
    assert neighbourhoods(real, crowded, k=1)["density"] == pytest.approx(2.0)
    assert neighbourhoods(real, crowded, k=1)["coverage"] == pytest.approx(0.2)


def test_density_and_coverage_agree_with_the_authors_code():
    prdc = pytest.importorskip("prdc")
    rng = torch.Generator().manual_seed(0)
    real, fake = torch.randn(500, 6, generator=rng), torch.randn(400, 6, generator=rng) * 1.2 + 0.3
    theirs = prdc.compute_prdc(real.numpy(), fake.numpy(), nearest_k=5)
    ours = neighbourhoods(real, fake, k=5, chunk=128)
    assert 0.1 < theirs["coverage"] < 0.99 and 0.1 < theirs["density"]  # a case where both can be wrong
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key


def test_intra_fid_is_the_mean_of_one_fid_per_class():
    rng = torch.Generator().manual_seed(0)
    labels = torch.arange(900) % 3
    real = torch.randn(900, 4, generator=rng, dtype=torch.float64) + labels[:, None]
    fake = torch.randn(900, 4, generator=rng, dtype=torch.float64) * 1.5 + labels[:, None] * 0.5
    per_class = intra_fid(real, labels, fake, labels)
    assert set(per_class) == {0, 1, 2}
    for c in range(3):
        assert per_class[c] == pytest.approx(fid(real[labels == c], fake[labels == c]))
    assert min(per_class.values()) < max(per_class.values())  # the classes really differ


def test_the_memorisation_check_finds_a_planted_training_image_at_distance_zero_and_first():
    rng = torch.Generator().manual_seed(0)
    train, heldout = torch.randn(2000, 16, generator=rng), torch.randn(300, 16, generator=rng)
    fake = torch.randn(200, 16, generator=rng)
    fake[137] = train[1234]  # a copy
    found = memorisation(fake, heldout, train)
    assert found["order"][0] == 137 and found["nearest"][137] == 1234 and found["distances"][137] == 0
    assert found["below_heldout_p1"] == pytest.approx(1 / 200, abs=0.02)  # the copy, and chance
    assert 0.8 < found["ratio"] < 1.25  # the rest behave like held-out points
    copier = memorisation(train[:200] + 1e-3, heldout, train)  # every sample a near-copy
    assert copier["ratio"] < 0.01 and copier["below_heldout_p1"] == 1.0


def test_nearest_recomputes_the_distance_it_found():
    rng = torch.Generator().manual_seed(1)
    points = torch.randn(500, 32, generator=rng) * 100
    d, i = nearest(points[:50], points)
    assert torch.equal(i, torch.arange(50)) and torch.equal(d, torch.zeros(50))


def provenance(**changes) -> dict[str, str]:
    return {"protocol": "fid50k_train", "features": "inception-0123456789ab", "resize": "legacy", "dataset": "x",
            "split": "train", "images": "60", **changes}


def test_stats_files_are_what_pytorch_fid_and_clean_fid_read(tmp_path):
    rng = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 8, generator=rng), torch.randn(300, 8, generator=rng) + 0.3
    write_stats(tmp_path / "a.npz", *statistics(a), provenance())
    with np.load(tmp_path / "a.npz", allow_pickle=False) as f:  # as both tools open it
        mu, sigma = f["mu"], f["sigma"]
        assert str(f["protocol"]) == "fid50k_train" and mu.dtype == np.float64 and sigma.shape == (8, 8)
    np.savez_compressed(tmp_path / "b.npz", mu=statistics(b)[0].numpy(), sigma=statistics(b)[1].numpy())  # pytorch-fid's save
    ours = frechet(*statistics(a), *statistics(b))
    pytorch_fid = pytest.importorskip("pytorch_fid.fid_score")
    loaded = [pytorch_fid.compute_statistics_of_path(str(tmp_path / f), None, 50, 8, "cpu") for f in ("a.npz", "b.npz")]
    assert pytorch_fid.calculate_frechet_distance(*loaded[0], *loaded[1]) == pytest.approx(ours, rel=1e-6)
    cleanfid = pytest.importorskip("cleanfid.fid")
    mu_b, sigma_b, said = read_stats(tmp_path / "b.npz", 8, provenance())  # a foreign file: no provenance, accepted
    assert cleanfid.frechet_distance(mu, sigma, mu_b.numpy(), sigma_b.numpy()) == pytest.approx(ours, rel=1e-6)
    assert said == {} and frechet(*statistics(a), mu_b, sigma_b) == pytest.approx(ours, rel=1e-9)


def test_a_stats_file_of_another_network_size_or_resize_is_refused_in_one_paragraph(tmp_path):
    write_stats(tmp_path / "s.npz", torch.zeros(8), torch.eye(8), provenance())
    with pytest.raises(UserError, match=r"ref=.*s\.npz: its statistics are of 8-d features .* gives 2048-d ones"):
        read_stats(tmp_path / "s.npz", 2048, provenance())
    with pytest.raises(UserError, match=r"computed with resize legacy \(this protocol: clean\)"):
        read_stats(tmp_path / "s.npz", 8, provenance(resize="clean"))
    with pytest.raises(UserError, match=r"computed with features inception-0123456789ab \(this protocol: inception-ffff"):
        read_stats(tmp_path / "s.npz", 8, provenance(features="inception-ffffffffffff"))
    np.savez(tmp_path / "m.npz", mean=np.zeros(8))
    with pytest.raises(UserError, match=r"holds mean, and reference statistics need mu and sigma"):
        read_stats(tmp_path / "m.npz", 8, provenance())
    (tmp_path / "t.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match=r"not a readable \.npz"):
        read_stats(tmp_path / "t.npz", 8, provenance())
    np.savez(tmp_path / "o.npz", mu=np.zeros(8), sigma=np.array([object()] * 64, dtype=object).reshape(8, 8))
    with pytest.raises(UserError, match=r"not a readable \.npz"):  # an object array would need unpickling
        read_stats(tmp_path / "o.npz", 8, provenance())


class Planted(nn.Module):
    """A 'generator' whose samples are fixed images: a test can plant a training image among them."""

    num_classes = None

    def __init__(self, images: torch.Tensor):
        super().__init__()
        self.images = images
        self.anchor = nn.Parameter(torch.zeros(1))

    def draw_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.arange(n, dtype=torch.float32)[:, None]

    def forward(self, z: torch.Tensor, y=None) -> torch.Tensor:
        return self.images[z[:, 0].long()]


@pytest.fixture(scope="module")
def mnist(mnist_root, mnist_classifier):
    from gan.data import MNISTDataModule

    datamodule = MNISTDataModule(root=mnist_root)
    datamodule.prepare_data()
    return datamodule


@pytest.mark.slow
def test_fid50k_train_draws_50000_samples_and_scores_against_every_training_image(mnist, monkeypatch):
    from gan.metrics import evaluator as module
    from gan.metrics.evaluator import Evaluator

    seen = []
    features = Evaluator.features
    monkeypatch.setattr(Evaluator, "features", lambda self, images, *a: seen.append(len(images)) or features(self, images, *a))
    monkeypatch.setattr(module, "kth_neighbour_distance", lambda points, k: torch.zeros(len(points)))  # the costly part
    monkeypatch.setattr(module, "cached", lambda path, build, what: build())  # not 750 MB of features into the cache
    monkeypatch.setattr(module, "score", lambda real, fake, k, device: {"fid": len(real["hidden"]), "is": len(fake["hidden"])})
    evaluator = Evaluator(mnist, "classifier50k_train")
    assert seen == [60_000]  # the reference: every training image
    images = (torch.rand(50_000, 1, 28, 28) * 2 - 1)
    result = evaluator(Planted(images))
    assert sum(seen[1:]) == 50_000 and max(seen[1:]) == 1000  # generated and scored a batch at a time
    assert result["fid"] == 60_000 and result["is"] == 50_000 and result["n"] == 50_000
    assert result["protocol"] == "classifier50k_train" and result["features"].startswith("classifier-MNIST-1x28x28-")
    assert evaluator.floor()["n"] == 10_000  # the held-out images against the training set: all 10,000 of them


@pytest.mark.slow
def test_a_planted_training_image_comes_first_in_the_nearest_pairs_grid(mnist, tmp_path):
    from PIL import Image

    from gan.evaluate import check_copies
    from gan.metrics.evaluator import Evaluator

    train = mnist.split(train=True)[0]
    samples = to_unit(mnist.split(train=False)[0][:300]).clone()  # held-out digits: like training ones, not copies
    samples[42] = to_unit(train[777])
    evaluator = Evaluator(mnist, "classifier300_test")
    found = check_copies(evaluator, Planted(samples), 300, tmp_path / "nearest.png")
    assert found["n"] == 300 and found["below_heldout_p1"] < 0.05 and 0.7 < found["ratio"] < 1.3
    raw = evaluator.memorisation(Planted(samples), 300)
    assert raw["order"][0] == 42 and raw["nearest"][42] == 777 and raw["distances"][42] == 0
    grid = np.asarray(Image.open(tmp_path / "nearest.png").convert("L"))
    assert grid.shape[1] >= 8 * 30 and grid.shape[0] > 2 * 30  # 8 images a row: 4 pairs, below a caption
    json.dumps(found)  # what gan.evaluate prints in its JSON line


def test_reference_statistics_of_a_data_set_are_written_and_scored_against(mnist, mnist_root, tmp_path, monkeypatch):
    from gan.evaluate import StatsArgs, write_reference
    from gan.metrics.evaluator import Evaluator

    monkeypatch.setenv("GAN_DATA_DIR", mnist_root)
    written = write_reference(StatsArgs(out=str(tmp_path / "mnist_test.npz"), data="mnist", protocol="classifier10k_test"), [])
    assert written["images"] == "10000" and written["split"] == "test" and written["features"].startswith("classifier-")
    evaluator = Evaluator(mnist, "classifier300_test", ref=str(tmp_path / "mnist_test.npz"))
    assert evaluator.names == ("fid", "is")
    samples = to_unit(mnist.split(train=True)[0][:300])
    against_file = evaluator(Planted(samples))
    against_data = Evaluator(mnist, "classifier300_test")(Planted(samples))
    assert set(against_file) == {"fid", "is", "n", "protocol", "features"}
    assert against_file["fid"] == pytest.approx(against_data["fid"], rel=1e-9)  # the same statistics, from the file
    with pytest.raises(UserError, match="out=x.png: reference statistics are written as .npz"):
        write_reference(StatsArgs(out="x.png"), [])
    with pytest.raises(UserError, match="Could not find 'data/nosuch'"):
        write_reference(StatsArgs(out=str(tmp_path / "y.npz"), data="nosuch"), [])



def test_inception_weights_download_uses_torch_hubs_downloader_into_the_cache_and_says_when_offline(tmp_path, monkeypatch):
    import urllib.error

    from gan.metrics import inception

    monkeypatch.setenv("GAN_CACHE_DIR", str(tmp_path / "cache"))
    asked = []

    def online(url, model_dir, **kwargs):
        asked.append((url, kwargs.get("check_hash")))
        (tmp_path / "cache" / "inception").mkdir(parents=True, exist_ok=True)
        (tmp_path / "cache" / "inception" / url.rsplit("/", 1)[1]).write_bytes(b"weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", online)
    assert inception.find_weights("download") == tmp_path / "cache" / "inception" / inception.NAMES[1]
    assert asked == [(inception.URL, True)]  # its hash checked by the downloader
    assert inception.find_weights("download") == tmp_path / "cache" / "inception" / inception.NAMES[1]
    assert len(asked) == 1  # fetched once
    assert inception.find_weights(None) == tmp_path / "cache" / "inception" / inception.NAMES[1]  # and found after

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("GAN_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UserError, match=r"inception_weights=download: https://.* could not be fetched .*no network.*"
                                        r"Offline, download weights-inception"):
        inception.find_weights("download")
