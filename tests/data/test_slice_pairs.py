"""PolyCL's slice triplets: each strategy's rule on hand-made scans with known organ presence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scripts.data.slice_pairs import SliceBank, SlicePairDataset, pair_candidates


def _scan(presence: list[bool], value: float) -> dict:
    """A (1, 4, 3, Z) scan whose slice k holds value + k, with label voxels in the slices where presence is True."""
    depth = len(presence)
    image = value + np.broadcast_to(np.arange(depth, dtype=np.float32), (1, 4, 3, depth)).copy()
    label = np.zeros((1, 4, 3, depth), dtype=np.float32)
    label[0, 1, 1, [k for k, p in enumerate(presence) if p]] = 1
    return {"image": image, "label": label}


# scan 0: organ in slices 1, 2; scan 1: organ in slices 0..2; scan 2: organ in every slice (no organ-free slice)
SCANS = [_scan([False, True, True, False], 0.0), _scan([True, True, True], 100.0), _scan([True, True], 200.0)]


@pytest.fixture
def bank():
    return SliceBank(SCANS)


def test_the_bank_holds_every_slice_with_its_scan_and_presence(bank):
    assert bank.scan_ids.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2]
    assert bank.presence.tolist() == [False, True, True, False, True, True, True, True, True]
    assert bank.images.shape == (9, 1, 4, 3)
    assert bank.images[5, 0, 0, 0].item() == 101.0, "slice 1 of scan 1 is the last-axis slice"


def _draws(dataset: SlicePairDataset, repeats: int = 30) -> list[tuple[int, int, int]]:
    return [dataset.draw(i) for _ in range(repeats) for i in range(len(dataset))]


def test_strategy_s_pairs_a_slice_of_the_same_scan_against_another_scan(bank):
    dataset = SlicePairDataset(bank, "S", seed=1)
    assert dataset.anchors == list(range(9)), "every slice has another slice in its scan and another scan"
    for anchor, positive, negative in _draws(dataset):
        assert positive != anchor and bank.scan_ids[positive] == bank.scan_ids[anchor]
        assert bank.scan_ids[negative] != bank.scan_ids[anchor]


def test_strategy_o_pairs_the_same_presence_against_the_opposite_one_from_any_scan(bank):
    dataset = SlicePairDataset(bank, "O", seed=2)
    draws = _draws(dataset)
    for anchor, positive, negative in draws:
        assert positive != anchor and bank.presence[positive] == bank.presence[anchor]
        assert bank.presence[negative] != bank.presence[anchor]
    assert any(bank.scan_ids[p] != bank.scan_ids[a] for a, p, _ in draws), "positives come from any scan"


def test_strategy_m_pairs_same_scan_and_presence_against_another_scan_of_opposite_presence(bank):
    dataset = SlicePairDataset(bank, "M", seed=3)
    expected = []
    for anchor in range(len(bank)):
        same = [j for j in range(9) if j != anchor and bank.scan_ids[j] == bank.scan_ids[anchor]
                and bank.presence[j] == bank.presence[anchor]]
        other = [j for j in range(9) if bank.scan_ids[j] != bank.scan_ids[anchor] and bank.presence[j] != bank.presence[anchor]]
        if same and other:
            expected.append(anchor)
    # scan 0's organ slices 1, 2 are skipped: scans 1 and 2 have no organ-free slice to be their negative
    assert dataset.anchors == expected == [0, 3, 4, 5, 6, 7, 8]
    for anchor, positive, negative in _draws(dataset):
        assert positive != anchor and bank.scan_ids[positive] == bank.scan_ids[anchor]
        assert bank.presence[positive] == bank.presence[anchor]
        assert bank.scan_ids[negative] != bank.scan_ids[anchor] and bank.presence[negative] != bank.presence[anchor]


def test_m_skips_an_anchor_whose_only_negatives_are_in_its_own_scan():
    bank = SliceBank([_scan([True, True, False, False], 0.0), _scan([True, True], 10.0)])
    dataset = SlicePairDataset(bank, "M")
    # scan 0's organ slices 0, 1: every organ-free slice is in scan 0 itself -> skipped; its organ-free slices pair
    # with each other against scan 1's organ slices, and scan 1's against scan 0's organ-free ones
    assert dataset.anchors == [2, 3, 4, 5]
    positives, negatives = pair_candidates(bank.scan_ids, bank.presence, 0, "M")
    assert positives.tolist() == [1] and negatives.tolist() == []


def test_items_hold_the_drawn_slices(bank):
    dataset = SlicePairDataset(bank, "S", seed=0)
    item = dataset[4]
    anchor, positive, negative = item["indices"].tolist()
    assert anchor == 4
    for key, index in (("anchor", anchor), ("positive", positive), ("negative", negative)):
        assert torch.equal(item[key], bank.images[index]) and item[key].shape == (1, 4, 3)


def test_keep_fraction_keeps_the_slices_around_the_organ_centre():
    scan = _scan([False] * 6 + [True] * 2 + [False] * 2, 0.0)  # organ in slices 6, 7: centre 6.5
    bank = SliceBank([scan], keep_fraction=0.4)
    assert bank.slice_indices.tolist() == [5, 6, 7, 8]
    middle = SliceBank([{"image": scan["image"]}], keep_fraction=0.4, centre="middle")
    assert middle.slice_indices.tolist() == [3, 4, 5, 6] and not middle.presence.any()


def test_refusals():
    with pytest.raises(ValueError, match="strategy"):
        pair_candidates(np.zeros(2), np.zeros(2, bool), 0, "X")
    with pytest.raises(ValueError, match="keep_fraction"):
        SliceBank(SCANS, keep_fraction=0.0)
    with pytest.raises(ValueError, match="in-plane|first scan"):
        SliceBank([SCANS[0], {"image": np.zeros((1, 5, 3, 2), np.float32)}])
    with pytest.raises(ValueError, match="no anchor"):
        SlicePairDataset(SliceBank([SCANS[2]]), "S")
