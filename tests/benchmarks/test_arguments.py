"""The benchmarks' command-line values, in every form fire passes them."""

import pytest

from scripts.benchmarks.arguments import comma_separated, labelled_counts


@pytest.mark.parametrize(
    "value, cast, expected",
    [
        ("2,4,8", int, [2, 4, 8]),
        (" 2, 4 ,", int, [2, 4]),
        ((2, 4), int, [2, 4]),
        (2, int, [2]),
        (0.2, float, [0.2]),
        ("0.2,0.1", float, [0.2, 0.1]),
        ("baseline,dualssl", str, ["baseline", "dualssl"]),
        (["dualssl"], str, ["dualssl"]),
    ],
)
def test_comma_separated_reads_a_string_a_number_or_a_sequence(value, cast, expected):
    assert comma_separated(value, cast) == expected


def test_comma_separated_names_an_item_it_cannot_convert():
    with pytest.raises(ValueError, match="x"):
        comma_separated("2,x", int)


def test_labelled_counts_accepts_counts_within_the_pool():
    assert labelled_counts("1,12", pool_cases=12) == [1, 12]


@pytest.mark.parametrize("value", ["0,2", "13", ""])
def test_labelled_counts_refuses_a_count_outside_the_pool_or_none(value):
    with pytest.raises(ValueError, match=r"\[1, 12\]"):
        labelled_counts(value, pool_cases=12)
