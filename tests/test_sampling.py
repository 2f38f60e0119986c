import pytest
import torch

from ferlab.data.sampling import epoch_counts, epoch_size, oversample


def _labels(counts: list[int]) -> torch.Tensor:
    return torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])


def test_oversample_tops_minority_classes_up_to_exactly_the_target():
    labels = _labels([5, 12, 3, 20])
    idx = oversample(labels, 4, 10, torch.Generator().manual_seed(0))
    assert idx.dtype == torch.int64
    assert torch.bincount(labels[idx], minlength=4).tolist() == [10, 12, 10, 20]
    assert epoch_counts(labels, 4, 10) == [10, 12, 10, 20] and epoch_size(labels, 4, 10) == len(idx) == 52


def test_oversample_keeps_every_original_index_and_repeats_only_minorities():
    labels = _labels([5, 12, 3, 20])
    idx = oversample(labels, 4, 10, torch.Generator().manual_seed(1))
    per_index = torch.bincount(idx, minlength=len(labels))
    assert (per_index >= 1).all()
    big = (labels == 1) | (labels == 3)
    assert (per_index[big] == 1).all()  # classes at or above the target are not repeated
    assert (per_index[~big] > 1).all()


@pytest.mark.parametrize("size,target", [(3, 10), (3, 8), (7, 9), (4, 4), (5, 100)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_repeats_are_spread_evenly_over_the_class(size, target, seed):
    # no image k + 1 times before every image of its class has k: per-image counts differ by <= 1
    labels = _labels([size, 2])
    idx = oversample(labels, 2, target, torch.Generator().manual_seed(seed))
    per_image = torch.bincount(idx, minlength=len(labels))[:size]
    assert per_image.sum() == target
    assert per_image.max() - per_image.min() <= 1


def test_which_images_get_the_extra_copy_depends_on_the_seed():
    labels = _labels([10, 15])
    chosen = set()
    for seed in range(5):
        idx = oversample(labels, 2, 15, torch.Generator().manual_seed(seed))
        per_image = torch.bincount(idx, minlength=25)[:10]
        chosen.add(tuple(torch.nonzero(per_image == 2).flatten().tolist()))
    assert len(chosen) > 1


def test_target_zero_means_the_largest_class():
    labels = _labels([4, 9, 1, 6])
    idx = oversample(labels, 4, 0, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[idx], minlength=4).tolist() == [9, 9, 9, 9]
    assert epoch_counts(labels, 4, 0) == [9, 9, 9, 9] and epoch_size(labels, 4, 0) == 36


def test_classes_above_the_target_keep_their_own_count():
    labels = _labels([30, 5])
    assert torch.bincount(labels[oversample(labels, 2, 10, torch.Generator().manual_seed(0))]).tolist() == [30, 10]


def test_oversample_is_deterministic_for_a_seed_and_shuffled():
    labels = _labels([5, 12, 3, 20])
    a = oversample(labels, 4, 10, torch.Generator().manual_seed(7))
    b = oversample(labels, 4, 10, torch.Generator().manual_seed(7))
    c = oversample(labels, 4, 10, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[: len(labels)], torch.arange(len(labels)))  # not the originals, then the copies


def test_bad_targets_and_empty_classes_are_errors():
    labels = _labels([5, 3])
    with pytest.raises(ValueError, match="target must be >= 0"):
        oversample(labels, 2, -1, torch.Generator())
    with pytest.raises(ValueError, match=r"class index\(es\) \[2\] have no images"):
        oversample(labels, 3, 10, torch.Generator())
    with pytest.raises(ValueError, match="labels must lie in"):
        epoch_counts(torch.tensor([0, 1, 5]), 2, 0)
    with pytest.raises(ValueError, match="1-D integer"):
        epoch_size(torch.tensor([0.0, 1.0]), 2, 0)
