from math import comb

import pytest

from prefixrl.data.evaluate import pass_at_k


@pytest.mark.parametrize("n,c,k,expected", [
    (2, 1, 1, 0.5),
    (4, 2, 2, 1 - 1 / 6),  # 1 - C(2,2)/C(4,2)
    (10, 3, 5, 1 - comb(7, 5) / comb(10, 5)),
    (5, 0, 3, 0.0),
    (5, 5, 1, 1.0),
    (5, 3, 3, 1.0),  # n - c < k: every draw of k holds a correct sample
    (256, 1, 1, 1 / 256),
])
def test_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_large_n_matches_binomial_formula():
    n, c, k = 200, 7, 64
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), rel=1e-9)


@pytest.mark.parametrize("n,c,k", [(4, 1, 5), (4, 5, 1), (4, 1, 0)])
def test_invalid(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
