"""Shared fixtures: a tiny random-init Llama and the embedded tokenizer, built locally (no downloads)."""

import pytest
import torch

from prefixrl.model import ModelShape, build_model
from prefixrl.tasks.chain import ChainTask
from prefixrl.tokenizer import build_tokenizer

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tok():
    return build_tokenizer()


@pytest.fixture
def tiny_model(tok):
    return build_model(tok, ModelShape(hidden=32, layers=1, heads=2, ffn=64, max_positions=128), seed=0)


@pytest.fixture(scope="session")
def task():
    return ChainTask(easy_max_steps=6, hard_steps=6)
