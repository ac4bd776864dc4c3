import pytest

from prefixrl.rollout.flops import Ledger, sample_flops, train_flops


def test_rules():
    assert sample_flops(1000, 7) == 14_000  # 2·N·D
    assert train_flops(1000, 7) == 42_000  # 6·N·D


def test_ledger_arithmetic_and_round_trip():
    led = Ledger()
    led.add("collect/prefill", 10.0)
    led.add("collect/decode", 5.0)
    led.add("rl/train", 2.5)
    led.add("collect/decode", 1.0)
    assert led.total() == 18.5
    assert led.total("collect/") == 16.0
    assert led.total("rl/") == 2.5
    assert Ledger.from_dict(led.to_dict()).to_dict() == led.to_dict()
    with pytest.raises(ValueError):
        led.add("x", -1.0)
