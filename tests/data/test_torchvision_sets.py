import shutil
from pathlib import Path

import pytest
import torch

from gan.data import MNISTDataModule, StepBatches, to_unit
from gan.errors import UserError
from tests.helpers import DATA_ROOT


def take(batches: StepBatches, n: int) -> list[torch.Tensor]:
    """The first `n` iterations' index batches, whatever the chunks they come in."""
    out = []
    for chunk in batches:
        out.extend(chunk)
        if len(out) >= n:
            return out[:n]


@pytest.mark.parametrize("sampling", ["with_replacement", "epochs"])
def test_batches_depend_only_on_seed_and_iteration_whatever_the_chunks(sampling):
    reference = take(StepBatches(100, 8, 2, sampling, seed=3), 20)  # one iteration per chunk; 6 per epoch
    uneven = StepBatches(100, 8, 2, sampling, seed=3, chunk_length=lambda t: 1 + t % 4)
    chunks = iter(uneven)
    assert [len(next(chunks)) for _ in range(4)] == [1, 2, 4, 4]  # starts after iterations 0, 1, 3, 7
    assert all(torch.equal(a, b) for a, b in zip(take(uneven, 20), reference))
    resumed = StepBatches(100, 8, 2, sampling, seed=3, start_step=lambda: 8, chunk_length=lambda t: 5)  # mid-epoch 1
    assert all(torch.equal(a, b) for a, b in zip(take(resumed, 12), reference[8:]))
    other_seed = take(StepBatches(100, 8, 2, sampling, seed=4), 1)
    assert not torch.equal(other_seed[0], reference[0])
    assert reference[0].shape == (2, 8) and reference[0].dtype == torch.long


def test_epochs_sampling_visits_each_image_once_per_epoch():
    batches = StepBatches(64, 8, 1, "epochs", seed=0, chunk_length=lambda t: 3)
    epochs = torch.cat([b.flatten() for b in take(batches, 16)]).view(2, 64)
    assert all(sorted(e.tolist()) == list(range(64)) for e in epochs) and not torch.equal(epochs[0], epochs[1])


def test_with_replacement_draws_repeat_indices_within_an_epoch():
    seen = torch.cat([b.flatten() for b in take(StepBatches(64, 8, 1, "with_replacement", seed=0), 8)])
    assert len(set(seen.tolist())) < 64 and seen.min() >= 0 and seen.max() < 64


def test_mnist_is_held_in_memory_scaled_like_the_seed(mnist_root):
    dm = MNISTDataModule(root=mnist_root)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.images.shape == (60000, 1, 28, 28) and dm.images.dtype == torch.uint8  # a quarter of float32's memory
    index = next(iter(dm.train_dataloader()))  # one iteration's: (1 iteration, 1 batch per D step, 32)
    chunk = dm.transfer_batch_to_device(index, torch.device("cpu"), 0)
    [(images, labels)] = list(chunk)
    assert images.shape == (1, 32, 1, 28, 28) and labels.shape == (1, 32)
    assert torch.equal(images, dm.images[index[0]]) and torch.equal(labels, dm.labels[index[0]])  # each with its digit
    expected = dm.images[index[0]].numpy().astype("float32") / 127.5 - 1  # the Keras example's scaling (in GAN.iteration)
    assert torch.equal(to_unit(images), torch.from_numpy(expected)) and to_unit(dm.images).min() == -1
    assert dm.labels.unique().tolist() == list(range(10)) and dm.num_classes == 10


def test_missing_dataset_offline_gives_one_clear_message(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\n<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr("torchvision.datasets.MNIST.download", offline)
    with pytest.raises(UserError) as err:
        MNISTDataModule(root=str(tmp_path / "nowhere")).prepare_data()
    text = str(err.value)
    assert str((tmp_path / "nowhere" / "MNIST" / "raw").resolve()) in text
    assert "train-images-idx3-ubyte" in text and "GAN_DATA_DIR" in text and "\n" not in text


def test_image_shape_must_match_the_files(mnist_root):
    dm = MNISTDataModule(root=mnist_root, image_shape=(3, 32, 32))
    with pytest.raises(UserError, match=r"data.image_shape=\[3, 32, 32\]"):
        dm.setup("fit")


def test_padding_frames_every_image_in_black_for_training_and_metrics_alike(mnist_root):
    plain, padded = MNISTDataModule(root=mnist_root), MNISTDataModule(root=mnist_root, pad=2, image_shape=(1, 32, 32))
    for train in (True, False):
        (a, labels_a), (b, labels_b) = plain.split(train), padded.split(train)
        assert b.shape[1:] == (1, 32, 32) and torch.equal(b[:, :, 2:-2, 2:-2], a) and torch.equal(labels_a, labels_b)
        assert b[:, :, :2].max() == 0 and b[:, :, :, -2:].max() == 0
    padded.setup("fit")
    assert padded.images.shape[1:] == (1, 32, 32)
    with pytest.raises(UserError, match=r"data.image_shape=\[1, 28, 28\] but the MNIST images are \[1, 32, 32\] with data.pad=2"):
        MNISTDataModule(root=mnist_root, pad=2).setup("fit")


def test_num_classes_in_the_config_must_match_the_dataset(mnist_root):
    with pytest.raises(UserError, match="data.num_classes=7 but MNIST has 10 classes"):
        MNISTDataModule(root=mnist_root, num_classes=7)


def test_a_truncated_dataset_file_is_named_as_corrupt_not_as_missing(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in Path(DATA_ROOT, "MNIST", "raw").iterdir():
        shutil.copy(f, raw / f.name)
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:100_000])
    with pytest.raises(UserError) as err:
        MNISTDataModule(root=str(tmp_path), download=False).prepare_data()
    assert f"{images} is truncated or corrupt" in str(err.value) and "\n" not in str(err.value)
