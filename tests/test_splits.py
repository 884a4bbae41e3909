"""Splits are disjoint, complete, reproducible, and their manifests identify them."""
from __future__ import annotations

import pytest
import torch

from fvlib import splits


@pytest.mark.parametrize("k", [0, 7])
def test_classwise_masks(digits, k):
    s = splits.classwise(digits, k)
    assert torch.equal(s.forget, digits.train_y == k)
    assert not (s.forget & s.retain).any() and (s.forget | s.retain).all()
    assert torch.equal(s.test_eval, digits.test_y != k) and torch.equal(s.test_forget, ~s.test_eval)
    assert s.scenario == "classwise" and s.trial == k


def test_random_split_size_seed_and_hash(digits):
    a, b, c = splits.random(digits, 0), splits.random(digits, 0), splits.random(digits, 1)
    n = len(digits.train_y)
    assert int(a.forget.sum()) == int(n * 0.1)
    assert a.hash == b.hash and torch.equal(a.forget, b.forget)
    assert a.hash != c.hash
    assert a.test_eval.all() and not a.test_forget.any()


def test_manifest_rebuilds_the_split(digits):
    s = splits.for_trial(digits, "random", 3)
    m = s.manifest()
    rebuilt = torch.zeros(len(digits.train_y), dtype=torch.bool)
    rebuilt[m["forget"]] = True
    assert torch.equal(rebuilt, s.forget) and m["hash"] == s.hash
    assert splits.for_trial(digits, "classwise", 2).hash != splits.for_trial(digits, "classwise", 3).hash


def test_bad_inputs(digits):
    with pytest.raises(ValueError, match="valid: classwise, random"):
        splits.for_trial(digits, "clusterwise", 0)
    with pytest.raises(ValueError, match="out of range"):
        splits.classwise(digits, 10)
    with pytest.raises(ValueError, match="percent"):
        splits.random(digits, 0, percent=0)


def test_union_of_classes(digits):
    s = splits.forget_classes(digits, [1, 2])
    assert torch.equal(s.forget, (digits.train_y == 1) | (digits.train_y == 2))
    assert s.classes == (1, 2)


def test_splits_are_checked_against_their_data(digits):
    s = splits.classwise(digits, 1)
    assert s.check(digits) is s
    small = digits.subset(200, 50, seed=1)
    with pytest.raises(splits.SplitError, match="built for other data"):
        s.check(small)
    with pytest.raises(splits.SplitError, match="rounds|is 0 images"):
        splits.random(small, 0, percent=0.1)
    tiny = digits.subset(5, 10, seed=0)  # 5 images cannot cover 10 classes
    missing = next(c for c in range(10) if not (tiny.train_y == c).any())
    with pytest.raises(splits.SplitError, match="forgets no training image"):
        splits.classwise(tiny, missing).check(tiny)


def test_a_shape_for_data_or_a_string_for_a_class_is_one_clear_error(digits):
    with pytest.raises(TypeError, match=r"ImageData.*tuple"):
        splits.classwise((3, 32, 32), 0)
    with pytest.raises(TypeError, match=r"ImageData"):
        splits.random((3, 32, 32), 0)
    # digits' class names are '0'..'9': a name is taken when it is one; anything else is named
    assert splits.classwise(digits, "3").hash == splits.classwise(digits, 3).hash
    with pytest.raises(TypeError, match=r"class index \(int\) or name.*'cat'.*'0', '1'"):
        splits.classwise(digits, "cat")
    with pytest.raises(TypeError, match=r"class index \(int\)"):
        splits.forget_classes(digits, [1, 2.0])
