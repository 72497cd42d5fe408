"""Augmentation in training: D's three inputs go through it and nothing else does; K iterations
per step, a resume and the CUDA-graph runner's CPU stand-in augment exactly as one straight run;
ADA's p is state and is logged; the `data.subset` and `data.mirror` keys. (Two processes against
one: tests/engine/test_distributed.py; the transforms themselves: tests/augment/test_transforms.py.)"""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from gan.augment import DiffAugment
from gan.generate import Args, write
from gan.training.fit import fit
from tests.engine.test_chunks import EagerCapture, assert_same_runs, assert_same_tensors, run, train
from tests.helpers import events, make_cfg, quick

pytestmark = pytest.mark.usefixtures("mnist_root")

# ADA that moves: a step of p is 32 * 4 / 500 = 0.256 every 4 iterations, and R1 differentiates through it.
ADA = ["augment=ada", "augment.kimg=0.5", "loss.r1_gamma=1.0"]
SMALL_DCGAN = ["experiment=dcgan_mnist", "model.generator.width=8", "model.discriminator.width=8", "data.batch_size=32"]
AUGMENTED = {
    "diffaug": [*SMALL_DCGAN, "augment=diffaug", "data.subset=500", "data.mirror=true", "trainer.max_steps=40"],
    "ada": [*ADA, "trainer.max_steps=40"],
    "ada_gp": ["experiment=wgan_gp_mnist", *SMALL_DCGAN[1:], "augment=ada", "augment.p=0.5", "augment.target=null",
               "trainer.max_steps=24"],
}


class CountingAugment(DiffAugment):
    """DiffAugment that counts the batches it augments, and whether G's gradient could flow through."""

    calls: list[tuple[int, bool]] = []

    def forward(self, x, draws):
        CountingAugment.calls.append((len(x), x.requires_grad))
        return super().forward(x, draws)


def test_d_sees_its_three_batches_augmented_and_nothing_else_is(mnist_classifier, tmp_path):
    CountingAugment.calls.clear()
    fit(make_cfg(*quick("augment=diffaug", "augment._target_=tests.augment.test_training.CountingAugment",
                        "gan.n_critic=2", "loss=wgan_gp", "model.generator.batch_norm=false", "eval_every=6",
                        "callbacks.metrics.n=200"), run_dir=tmp_path))  # evaluated twice: G alone
    calls = list(CountingAugment.calls)
    shown = [c for c in calls if c == (25, False)]  # the reals_seen image: at the start and with each of 3 grids
    training = [c for c in calls if c != (25, False)]
    assert len(shown) == 1 + 3
    # per iteration: reals and fakes of each of the 2 D steps (no gradient to G: G is not trained there), then
    # G's fakes, through which G's gradient flows
    assert len(training) == 12 * 5
    assert all(training[i : i + 5] == [(32, False)] * 4 + [(32, True)] for i in range(0, 60, 5))
    before = len(CountingAugment.calls)
    write(Args(ckpt=str(tmp_path), n=4, out=str(tmp_path / "samples.npy")))
    assert len(CountingAugment.calls) == before  # gan.generate: G alone
    tags = events(tmp_path).Tags()["images"]
    assert "samples" in tags and "reals_seen" in tags


@pytest.mark.parametrize("name", list(AUGMENTED))
def test_seven_iterations_per_step_augment_as_seven_steps_bit_for_bit(name, tmp_path):
    one = run(tmp_path, "one", 1, *AUGMENTED[name])
    seven = run(tmp_path, "seven", 7, *AUGMENTED[name])
    assert_same_runs(one, seven)


def test_a_resume_mid_interval_matches_the_uninterrupted_ada_run_and_p_is_logged(tmp_path):
    straight = run(tmp_path, "straight", 7, *AUGMENTED["ada"])
    resumed = run(tmp_path, "resumed", 7, *AUGMENTED["ada"], f"ckpt_path={straight / 'checkpoints' / 'step_000018.ckpt'}")
    middle = torch.load(straight / "checkpoints" / "step_000018.ckpt", weights_only=True)["state_dict"]
    assert int(middle["augment.iterations"]) == 18 and middle["augment.signs"][1] == 2 * 32  # 18 = 4 * 4 + 2
    a, b = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=True) for d in (straight, resumed))
    assert_same_tensors(a["state_dict"], b["state_dict"])  # p, r_t and the counts with the weights
    assert_same_tensors(a["optimizer_states"], b["optimizer_states"])
    ea, eb = events(straight), events(resumed)
    p = [(e.step, e.value) for e in ea.Scalars("train/aug_p")]
    assert [x for x in p if x[0] > 18] == [(e.step, e.value) for e in eb.Scalars("train/aug_p")]
    assert p[-1] == (40, pytest.approx(float(a["state_dict"]["augment.p"])))
    assert all(0 <= v <= 1 for _, v in p) and len({v for _, v in p}) > 1  # it moved, within [0, 1]
    assert [e.step for e in ea.Scalars("train/ada_rt")] == [s for s, _ in p]


def test_the_graph_runner_replays_an_augmented_iteration_exactly(tmp_path):
    cfg = make_cfg("trainer=cpu", *ADA, run_dir=tmp_path)
    eager, _ = train(cfg, k=7, max_steps=30, callbacks=[])
    graphed, trainer = train(cfg, k=7, max_steps=30, callbacks=[EagerCapture()])
    runner = graphed.execution.graphed
    assert (runner.eager_iterations, runner.replayed, runner.captures) == (3, 27, 1)
    assert_same_tensors(eager.state_dict(), graphed.state_dict())
    assert float(graphed.augment.p) > 0  # the replayed iterations steered p as the eager ones did


def test_a_subset_is_a_fixed_seeded_choice_and_mirror_doubles_the_rows_with_flips(tmp_path):
    def data(*overrides):
        module = instantiate(make_cfg(*overrides).data)
        module.setup()
        return module

    full, subset = data(), data("data.subset=1000")
    assert len(subset.images) == 1000 and subset.rows == 1000
    assert torch.equal(subset.images, data("data.subset=1000", "seed=7").images)  # not the run's seed
    assert not torch.equal(subset.images, data("data.subset=1000", "data.subset_seed=1").images)
    training_images = {image.numpy().tobytes() for image in full.images}
    assert all(image.numpy().tobytes() in training_images for image in subset.images)  # chosen from the training split
    assert len(full.split(train=False)[0]) == 10000  # the metrics still score against the whole test split
    mirrored = data("data.subset=1000", "data.mirror=true")
    assert mirrored.rows == 2000
    chunk = mirrored.transfer_batch_to_device(torch.tensor([[[3, 1003]]]), torch.device("cpu"), 0)
    [(images, labels)] = list(chunk)
    assert torch.equal(images[0, 0], subset.images[3]) and torch.equal(images[0, 1], subset.images[3].flip(-1))
    assert labels[0, 0] == labels[0, 1]
