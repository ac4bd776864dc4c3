"""The embedded base model: a small Llama from transformers, random-init, saved with save_pretrained.


Any Hugging Face causal LM works with the rest of the pipeline; this module only builds and loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from prefixrl.io.errors import BadInput

# Our own progress bars say what is happening; transformers' per-load "Loading weights" bars would
# interleave with them and with one-line error messages.
transformers.utils.logging.disable_progress_bar()

GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")
ARCHS = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}


@dataclass(frozen=True)
class ModelShape:
    hidden: int = 128
    layers: int = 3
    heads: int = 4
    ffn: int = 384
    max_positions: int = 256


def build_model(tokenizer: PreTrainedTokenizerBase, shape: ModelShape = ModelShape(), seed: int = 0,
                arch: str = "llama"):
    """A random-init causal LM: `llama` (the embedded default) or `qwen2` (a second family, for
    cross-family traces). Both are stock transformers classes."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")
    config_cls, model_cls = ARCHS[arch]
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden,
        intermediate_size=shape.ffn,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads,
        max_position_embeddings=shape.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return model_cls(config)


def param_count(model: torch.nn.Module) -> int:
    """N in the 2ND / 6ND FLOPs rule: every distinct parameter (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def load(path: str | Path):
    """Load a model folder written by save_pretrained (ours or any HF causal LM) and its tokenizer."""
    path = Path(path)
    tokenizer = load_tokenizer(path)
    model = user_file(path, "the model", lambda: AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32))
    return model, tokenizer


def user_file(path: Path, what: str, read):
    """read(), with any failure to parse the user's files (bad JSON, truncated safetensors, a config
    transformers rejects) turned into one line naming the folder; exit 2 instead of a traceback."""
    try:
        return read()
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001 - transformers/safetensors/tokenizers raise many types for bad files
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise BadInput(f"{path}: cannot load {what} ({type(e).__name__}: {first})") from None


def load_tokenizer(path: str | Path):
    """The tokenizer of a model folder (checked: config.json present, manifest verified if there is one)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a model folder (no config.json); run `prefixrl pretrain` first")
    if (path / "manifest.json").is_file():  # written by prefixrl.io.checkpoint: refuse a corrupt policy
        from prefixrl.io.checkpoint import verify_folder

        verify_folder(path)
    tokenizer = user_file(path, "its tokenizer", lambda: AutoTokenizer.from_pretrained(path))
    tok_cfg = path / "tokenizer_config.json"
    generic = tok_cfg.is_file() and user_file(tok_cfg, "it", lambda: json.loads(tok_cfg.read_text())).get(
        "tokenizer_class") in GENERIC_TOKENIZERS
    if generic:
        # A generic tokenizer.json (ours): load it exactly as written. transformers 5's AutoTokenizer swaps in
        # the model type's own class (e.g. Qwen2Tokenizer, with a byte-level pre-tokenizer that drops our
        # spaces) when config.json names a family; named tokenizer classes still go through AutoTokenizer.
        tokenizer = user_file(path, "its tokenizer", lambda: PreTrainedTokenizerFast.from_pretrained(path))
    return tokenizer
