"""Plausibility numbers of a pancreas mask without a pancreas label (scripts.evaluation.plausibility)."""

from __future__ import annotations

import numpy as np
import pytest

from scripts.evaluation.plausibility import body_mask, dice_on_labelled_slices, mask_plausibility, portal_confluence


def _body_ct(shape=(40, 40, 10)) -> np.ndarray:
    """Air at -1000 HU around a 0 HU cylinder of radius 15 (axis along Z) with a -900 HU gas bubble inside it and a
    detached 'table' of 200 HU below it."""
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    hu = np.full(shape, -1000.0)
    hu[(x - 20) ** 2 + (y - 20) ** 2 <= 15**2] = 0.0
    hu[18:22, 18:22, :] = -900.0  # gas inside the body
    hu[:, 38:40, :] = 200.0  # the table, not touching the body
    return hu


def test_body_mask_fills_gas_and_leaves_out_air_and_the_table():
    hu = _body_ct()
    body = body_mask(hu)
    assert body[20, 20, 5]  # the gas bubble inside is body
    assert not body[0, 0, 5] and not body[:, 38:, :].any()  # air outside, the table
    cylinder = np.count_nonzero(hu[:, :, 0] > -1000) - 2 * 40  # tissue + gas per slice, without the table
    assert body.sum() == cylinder * 10


def test_body_mask_refuses_a_2d_array():
    with pytest.raises(ValueError, match=r"\(X, Y, Z\)"):
        body_mask(np.zeros((4, 4)))


def test_mask_plausibility_fractions_and_volume():
    hu = _body_ct()
    liver = np.zeros(hu.shape, bool)
    liver[25:30, 15:25, :] = True
    mask = np.zeros(hu.shape, bool)
    mask[26:28, 20, 4] = True  # 2 voxels in the liver
    mask[19:21, 19, 4] = True  # 2 voxels in the gas bubble (air inside the body)
    mask[0, 0, 4] = True  # 1 voxel outside the body (air too)
    mask[12:17, 20, 4] = True  # 5 voxels in soft tissue: the plausible part
    report = mask_plausibility(mask, hu, (2.0, 2.0, 2.5), {"liver": liver, "spleen": np.zeros_like(liver)})
    assert report["volume_ml"] == pytest.approx(10 * 2 * 2 * 2.5 / 1000)
    assert report["inside"] == {"liver": pytest.approx(0.2), "spleen": 0.0}
    assert report["inside_any_organ"] == pytest.approx(0.2)
    assert report["in_air"] == pytest.approx(0.3)
    assert report["outside_body"] == pytest.approx(0.1)
    assert report["plausible"] == pytest.approx(0.5)
    assert report["components"] == 4
    assert report["landmark_distance_mm"] is None


def test_mask_plausibility_landmark_distance_in_mm():
    hu = np.zeros((10, 10, 10))
    mask = np.zeros(hu.shape, bool)
    mask[2, 2, 2] = mask[4, 2, 2] = True  # centroid (3, 2, 2)
    report = mask_plausibility(mask, hu, (1.0, 2.0, 3.0), {}, landmark=np.array([3.0, 6.0, 6.0]))
    assert report["centroid_voxel"] == [3.0, 2.0, 2.0]
    assert report["landmark_distance_mm"] == pytest.approx(np.hypot(4 * 2.0, 4 * 3.0))


def test_mask_plausibility_of_an_empty_mask_is_nan_not_an_error():
    hu = _body_ct()
    report = mask_plausibility(np.zeros(hu.shape), hu, (1.0, 1.0, 1.0), {}, landmark=np.zeros(3))
    assert report["volume_ml"] == 0.0 and report["components"] == 0
    assert np.isnan(report["plausible"]) and report["landmark_distance_mm"] is None


def test_mask_plausibility_names_the_array_on_another_grid():
    with pytest.raises(ValueError, match="organ 'liver' has shape"):
        mask_plausibility(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), (1, 1, 1), {"liver": np.zeros((4, 4, 3))})
    with pytest.raises(ValueError, match="spacing"):
        mask_plausibility(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), (1, 0, 1), {})


def _line(shape, start, end, radius=1) -> np.ndarray:
    """A tube of ``radius`` voxels (a cube cross-section) from ``start`` to ``end``."""
    tube = np.zeros(shape, bool)
    for t in np.linspace(0.0, 1.0, 200):
        c = np.rint(np.asarray(start) + t * (np.asarray(end) - np.asarray(start))).astype(int)
        tube[tuple(slice(max(0, v - radius), v + radius + 1) for v in c)] = True
    return tube


def test_portal_confluence_is_where_the_trunk_to_the_liver_leaves_the_splenic_smv_path():
    shape = (40, 40, 40)  # RAS voxel order: high x is the patient's right (liver), low x the left (spleen)
    liver = np.zeros(shape, bool)
    liver[27:, 10:30, 20:] = True
    spleen = np.zeros(shape, bool)
    spleen[:5, 10:30, 18:34] = True
    junction = (18, 20, 22)
    veins = (
        _line(shape, (7, 20, 22), junction)  # splenic vein, from the splenic hilum
        | _line(shape, junction, (18, 20, 2))  # superior mesenteric vein, down
        | _line(shape, junction, (34, 20, 32))  # portal trunk, up and right into the liver
        | _line(shape, (30, 20, 28), (30, 12, 36))  # an intrahepatic branch
    )
    found = portal_confluence(veins, liver, spleen, (1.0, 1.0, 1.5))
    assert found is not None
    assert np.linalg.norm(found - np.asarray(junction)) <= 3.0  # inside the junction of the 3-voxel thick tubes
    assert veins[tuple(np.rint(found).astype(int))] and not liver[tuple(np.rint(found).astype(int))]


def test_portal_confluence_is_none_when_the_masks_cannot_show_it():
    shape = (20, 20, 20)
    liver, spleen = np.zeros(shape, bool), np.zeros(shape, bool)
    liver[12:, :, 10:] = True
    spleen[:3, :, 10:] = True
    outside_only = _line(shape, (5, 10, 12), (5, 10, 2))  # never reaches the liver
    assert portal_confluence(outside_only, liver, spleen, (1, 1, 1)) is None
    assert portal_confluence(np.zeros(shape), liver, spleen, (1, 1, 1)) is None
    with pytest.raises(ValueError, match="spleen has shape"):
        portal_confluence(outside_only, liver, spleen[:-1], (1, 1, 1))


def test_dice_only_on_the_slices_the_reference_labels():
    reference = np.zeros((8, 8, 6), bool)
    reference[2:6, 2:6, 0:2] = True  # 32 voxels on slices 0 and 1
    mask = np.zeros_like(reference)
    mask[2:6, 2:4, 0:2] = True  # 16 of them
    mask[:, :, 4] = True  # slices the reference does not label do not count
    dice, slices = dice_on_labelled_slices(mask, reference)
    assert slices == [0, 1]
    assert dice == pytest.approx(2 * 16 / (16 + 32))
    assert np.isnan(dice_on_labelled_slices(mask, np.zeros_like(reference))[0])


def test_targets_need_the_right_place_not_only_the_right_size():
    from scripts.evaluation.real_ct import meets_targets

    # the size of a pancreas, outside every organ, but in the colon wall 7 cm from the confluence
    in_colon_wall = {"case": "ircad_1.1", "volume_ml": 55.3, "plausible": 1.0, "landmark_distance_mm": 73.0}
    assert not meets_targets(in_colon_wall)
    assert meets_targets({**in_colon_wall, "landmark_distance_mm": 30.0})
    assert not meets_targets({**in_colon_wall, "landmark_distance_mm": 30.0, "volume_ml": 18.0})
    assert not meets_targets({"case": "totalseg_b", "dice_labelled_slices": float("nan")})
    assert meets_targets({"case": "totalseg_b", "dice_labelled_slices": 0.62})
