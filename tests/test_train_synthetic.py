"""`--data synthetic`: a loader fetches whole batches (`SyntheticImages.__getitems__`), with the
images and labels that making each item alone gives."""
import pytest
from hypothesis import given, settings, strategies as st

torch = pytest.importorskip("torch")
F = torch.nn.functional
from incdsl.train.data import SyntheticImages, make_loaders, open_data, reseed  # noqa: E402


def one_image(data: SyntheticImages, i: int):
    """Item i as the docstring defines it: its class's 4x4 pattern, upsampled, plus noise i % 4."""
    label = i % data.classes
    g = torch.Generator().manual_seed(data.seed * 1_000_003 + label)
    pattern = torch.randn((1, data.shape[0], 4, 4), generator=g)
    image = F.interpolate(pattern, size=data.shape[1:], mode="nearest")[0] + data.noise[i % data.NOISE_POOL]
    return image.clamp(-1, 1), label


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 99), min_size=1, max_size=12), st.integers(1, 12), st.integers(0, 3),
       st.sampled_from([(3, 5, 7), (1, 8, 8), (2, 3, 1)]))
def test_a_batch_is_its_items(indices, classes, seed, shape):
    data = SyntheticImages(100, shape, classes, seed)
    images, labels = data.__getitems__(indices)
    assert images.shape == (len(indices), *shape) and labels.dtype == torch.int64
    for row, i in enumerate(indices):
        image, label = one_image(data, i)
        assert torch.equal(images[row], image) and int(labels[row]) == label
        alone, alone_label = data[i]
        assert torch.equal(alone, image) and alone_label == label


def test_the_loader_gives_batches_in_its_sampler_order():
    data = open_data("synthetic", (3, 16, 16), num_classes=7, seed=5, synthetic_size=40)
    train, sampler, val = make_loaders(data, 8, seed=5)
    reseed(train, sampler, 5, 0)
    order = list(sampler)
    got = list(train)
    assert len(got) == 5 and all(x.shape == (8, 3, 16, 16) for x, _ in got)
    for b, (x, y) in enumerate(got):
        for row, i in enumerate(order[8 * b: 8 * b + 8]):
            image, label = one_image(data.train, i)
            assert torch.equal(x[row], image) and int(y[row]) == label
    assert sum(len(y) for _, y in val) == len(data.val)
