"""The training package's parts on their own: data, sampling, checkpoints, progress lines."""
from __future__ import annotations

import io
import random

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

import numpy as np  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from incdsl import IncdslError  # noqa: E402
from incdsl.train import checkpoint as ckpt  # noqa: E402
from incdsl.train.data import ShardSampler, make_loaders, open_data, reseed  # noqa: E402
from incdsl.train.progress import Progress  # noqa: E402


def test_digits_split_is_fixed_stratified_and_sized_to_the_input():
    a = open_data("digits", (3, 20, 24), seed=0)
    b = open_data("digits", (3, 20, 24), seed=0)
    assert len(a.train) + len(a.val) == 1797 and len(a.val) == 360
    assert torch.equal(a.val.tensors[0], b.val.tensors[0]) and torch.equal(a.val.tensors[1], b.val.tensors[1])
    image, label = a.train[0]
    assert image.shape == (3, 20, 24) and image.min() >= -1 and image.max() <= 1
    counts = torch.bincount(a.val.tensors[1], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of each class (174..183 images)
    assert a.classes == [str(d) for d in range(10)]


def test_synthetic_images_are_deterministic_and_class_dependent():
    data = open_data("synthetic", (3, 12, 12), num_classes=4, seed=1, synthetic_size=40)
    assert (len(data.train), len(data.val)) == (40, 10)
    x0, y0 = data.train[0]
    x4, y4 = data.train[4]
    x1, y1 = data.train[1]
    assert (y0, y4, y1) == (0, 0, 1)
    assert torch.equal(x0, data.train[0][0])
    assert (x0 - x4).abs().mean() < (x0 - x1).abs().mean()  # same class: only the noise differs


@settings(max_examples=30, deadline=None)
@given(size=st.integers(0, 60), world=st.integers(1, 5))
def test_validation_shards_cover_every_image_once(size, world):
    seen = sorted(i for rank in range(world) for i in ShardSampler(size, rank, world))
    assert seen == list(range(size))


def test_epoch_order_depends_on_seed_and_epoch_only():
    data = open_data("synthetic", (1, 8, 8), num_classes=3, seed=0, synthetic_size=32)

    def order(epoch, noise):
        torch.manual_seed(noise)  # the global generator must not matter
        loader, sampler, _ = make_loaders(data, batch_size=8, seed=7)
        reseed(loader, sampler, 7, epoch)
        return list(sampler)

    assert order(3, 0) == order(3, 123)
    assert order(3, 0) != order(4, 0)


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = ckpt.capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    path = str(tmp_path / "c.pt")
    ckpt.save(path, {"format": ckpt.FORMAT, "rng": [state]})
    loaded = ckpt.load(path, verify=False)  # weights_only=True inside; not a whole checkpoint
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ckpt.restore_rng(loaded["rng"][0])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_plain_turns_spec_values_into_builtin_types():
    from incdsl.lang.values import Dims, InDepth, Sym
    value = ckpt.plain({"act": Sym("relu"), "k": Dims((3, 3)), "c": InDepth(5), "x": [1.5, None, True]})
    assert value == {"act": "relu", "k": [3, 3], "c": 5, "x": [1.5, None, True]}
    assert type(value["act"]) is str and type(value["c"]) is int


def test_foreign_or_damaged_checkpoints_are_refused(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(IncdslError, match="cannot read checkpoint"):
        ckpt.load(str(broken))
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(IncdslError, match="is not an `incdsl train` checkpoint"):
        ckpt.load(str(other))


def test_weights_digest_sees_every_value():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    before = ckpt.weights_digest(model)
    model[1].running_mean[0] += 1e-6
    assert ckpt.weights_digest(model) != before


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_redraws_on_a_terminal_and_erases_itself():
    stream = FakeTTY()
    bar = Progress(stream, total=4, prefix="epoch 1/2")
    bar.update(4, 256, 0.5, 0.1)
    bar.close()
    text = stream.getvalue()
    assert text.startswith("\repoch 1/2 [####################] 4/4") and "loss 0.5000" in text and "lr 0.1" in text
    assert text.endswith("\r") and "\n" not in text


def test_progress_writes_plain_lines_elsewhere():
    stream = io.StringIO()
    bar = Progress(stream, total=3, prefix="epoch 2/5", interval=0.0)
    bar.update(1, 64, 1.25, 0.01)
    bar.update(3, 192, 1.0, 0.01)  # the end: the epoch's own line reports it
    bar.close()
    assert "\r" not in stream.getvalue()
    [line] = stream.getvalue().splitlines()
    assert line.startswith("epoch 2/5 1/3") and "img/s" in line and "loss 1.2500" in line
