"""Residual folding is removed locally; the rest of the field and the input stay as they were."""

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.metrics import jacobian_determinant, jacobian_statistics
from DIRVNetLib.registration.folding import remove_folding


def _local_fold():
    """A field folding near x = 32 mm (its x positions in mm, the field)."""
    size = (40, 36, 30)
    x = np.arange(size[0]) * 1.5
    bump = 6.0 * np.exp(-((x - 30.0) ** 2) / (2 * 2.0**2))  # du/dx down to about -1.8: folds near x = 32 mm
    values = np.zeros(tuple(reversed(size)) + (3,))
    values[..., 0] = bump[np.newaxis, np.newaxis, :]
    values[..., 1] = 0.3  # a constant shift elsewhere
    field = sitk.GetImageFromArray(values, isVector=True)
    field.SetSpacing((1.5, 1.2, 2.0))
    field.SetOrigin((10.0, -5.0, 3.0))
    return x, field


def test_a_local_fold_is_removed_and_nothing_else_changes():
    x, field = _local_fold()
    before = sitk.GetArrayFromImage(field).copy()
    assert (jacobian_determinant(field) <= 0).any()

    unfolded, changed, determinant = remove_folding(field)
    after = sitk.GetArrayFromImage(unfolded)
    assert changed > 0
    # the determinant returned is the unfolded field's, as computed over the whole field
    np.testing.assert_array_equal(determinant, jacobian_determinant(unfolded, np.float32))
    assert (jacobian_determinant(unfolded) > 0).all()
    far = np.abs(x - 30.0) > 15.0
    np.testing.assert_array_equal(after[..., far, :], before[..., far, :])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(field), before)  # input untouched
    assert unfolded.GetSpacing() == field.GetSpacing() and unfolded.GetOrigin() == field.GetOrigin()
    # the caller's determinant (as register passes it) gives the same statistics and the same result
    determinant = jacobian_determinant(field, np.float32)
    assert jacobian_statistics(field, determinant=determinant) == jacobian_statistics(field, dtype=np.float32)
    given, _, _ = remove_folding(field, determinant=determinant)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(given), after)
    assert (determinant <= 0).any()  # the caller's array is not modified


def test_a_field_the_caller_owns_is_repaired_in_place_to_the_same_values():
    _, field = _local_fold()
    before = sitk.GetArrayFromImage(field)
    copied, changed, determinant = remove_folding(field)
    owned = sitk.Image(field)  # shares field's buffer until written to
    repaired, changed_in_place, determinant_in_place = remove_folding(owned, in_place=True)
    assert repaired is owned and changed_in_place == changed > 0
    np.testing.assert_array_equal(sitk.GetArrayFromImage(repaired), sitk.GetArrayFromImage(copied))
    np.testing.assert_array_equal(determinant_in_place, determinant)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(field), before)  # the buffer it shared: untouched


def test_a_field_without_folding_is_returned_unchanged():
    values = np.random.default_rng(0).normal(0, 0.05, size=(20, 24, 2))
    field = sitk.GetImageFromArray(values, isVector=True)
    unfolded, changed, determinant = remove_folding(field)
    assert changed == 0 and (determinant > 0).all()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(unfolded), values)


def test_folds_far_apart_are_each_repaired_in_place():
    """Two small folds in opposite corners of an oblique, non-cubic field: each is repaired where it is
    (the edited values land at the right voxels), nothing between them changes."""
    shape = (30, 40, 50)  # numpy order (z, y, x)
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    values = np.zeros(shape + (3,))
    for centre in ((5, 6, 7), (24, 33, 42)):
        r2 = sum((c - v) ** 2 for c, v in zip(centre, (z, y, x)))
        values[..., 0] += 5.0 * np.exp(-r2 / 2.0) * np.sign(x - centre[2])  # a sharp local outward push
    field = sitk.GetImageFromArray(values, isVector=True)
    field.SetDirection(sitk.VersorTransform((0.2, 0.1, 1.0), 0.4).GetMatrix())
    field.SetSpacing((1.0, 1.1, 0.9))
    folding = jacobian_determinant(field) <= 0
    assert folding[:15].any() and folding[15:].any()

    unfolded, changed, determinant = remove_folding(field)
    after = sitk.GetArrayFromImage(unfolded)
    assert changed > 0 and (jacobian_determinant(unfolded) > 0).all()
    np.testing.assert_array_equal(determinant, jacobian_determinant(unfolded, np.float32))
    moved = np.argwhere(np.any(after != values, axis=-1))
    near_a_fold = np.minimum(np.abs(moved - (5, 6, 7)).max(1), np.abs(moved - (24, 33, 42)).max(1))
    assert len(moved) and near_a_fold.max() <= 4, near_a_fold.max()
    assert unfolded.GetDirection() == field.GetDirection() and unfolded.GetSpacing() == field.GetSpacing()


def test_folding_voxels_are_grouped_into_boxes_that_do_not_overlap():
    from DIRVNetLib.registration.folding import _groups

    reach = 7
    points = np.array([[5, 5, 5], [6, 5, 5], [60, 60, 60], [5, 15, 5], [5, 25, 5], [30, 90, 2]])
    groups = _groups(points, reach)
    # a chain of points whose boxes overlap the next one's is one group, however long; the rest stand alone
    assert sorted(len(g) for g in groups) == [1, 1, 4]
    assert sorted(map(tuple, np.concatenate(groups))) == sorted(map(tuple, points))
    boxes = [(g.min(0) - reach, g.max(0) + reach + 1) for g in groups]
    for i, (low_a, high_a) in enumerate(boxes):
        for low_b, high_b in boxes[i + 1 :]:
            assert not (np.all(low_a < high_b) and np.all(low_b < high_a))
