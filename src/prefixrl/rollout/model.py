"""The embedded base model: a small Llama from transformers, random-init, saved with save_pretrained.


Any Hugging Face causal LM works with the rest of the pipeline; this module only builds and loads.
"""

from __future__ import annotations

import json
import re
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


def load(path: str | Path, device: torch.device | str = "cpu"):
    """Load a model folder written by save_pretrained (ours or any HF causal LM) and its tokenizer; the
    weights in float32 on `device` (mixed precision is autocast's job: `prefixrl.rollout.precision`)."""
    path = Path(path)
    tokenizer = load_tokenizer(path)
    model = user_file(path, "the model", lambda: AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32))
    return model.to(device), tokenizer


# What a stage reads from a Hub snapshot: configs, tokenizer files, chat templates, and (only when the
# stage needs the weights) safetensors. Other weight formats in the same repo are never fetched.
_TOKENIZER_FILES = ("*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja", "tokenizer*")
_WEIGHT_FILES = ("*.safetensors",)
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def model_folder(spec: str | Path, weights: bool = True) -> Path:
    """The local folder of `--model`: the path itself when it is a folder, else a Hugging Face Hub id
    ("org/name") resolved to its snapshot in the Hub cache that transformers reads (downloaded once;
    with HF_HUB_OFFLINE=1, the cache only). weights=False fetches the config and tokenizer alone: the
    stages that only cut or export token ids never hold a 7B model's weights in memory."""
    path = Path(spec)
    if path.is_dir():
        return path
    text = str(spec)
    local = path.exists() or not _HUB_ID.match(text) or (len(path.parts) > 1 and Path(path.parts[0]).is_dir())
    if local:  # a path, not an id: say what was looked for
        raise BadInput(f"{text}: no model folder there (a folder with config.json, e.g. made by `prefixrl "
                       "pretrain`); --model takes a folder or a Hugging Face Hub id (org/name)")
    from huggingface_hub import snapshot_download

    patterns = list(_TOKENIZER_FILES + (_WEIGHT_FILES if weights else ()))
    try:
        return Path(snapshot_download(text, allow_patterns=patterns))
    except Exception as e:  # noqa: BLE001 - offline, not found, gated, network: one line naming both places
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise BadInput(f"{text}: no model folder there (such as one `prefixrl pretrain` makes), and it could not be "
                       f"loaded as a Hugging Face Hub id "
                       f"({type(e).__name__}: {first})") from None


def from_gguf(folder: str | Path, gguf_file: str, out: str | Path) -> Path:
    """An ordinary HF model folder (safetensors, tokenizer, chat template) from a GGUF file, through
    transformers' own GGUF loader (needs the `gguf` package). The weights are dequantized to float32 and
    the model is rebuilt as its plain transformers class: a GGUF-loaded model keeps a quantization config
    that save_pretrained refuses. Written as a policy folder (atomic, with a manifest)."""
    from prefixrl.io.checkpoint import save_policy

    folder, out = Path(folder), Path(out)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    plain = type(loaded)(type(loaded.config).from_dict(config))
    plain.load_state_dict(loaded.state_dict(), strict=True)
    save_policy(out, plain, tokenizer)
    return out


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


def load_tokenizer(path: str | Path, weights: bool = True):
    """The tokenizer of a model folder (checked: config.json present, manifest verified if there is one;
    weights=False: the folder may lack its weight files, as a tokenizer-only Hub snapshot does)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a model folder (no config.json); run `prefixrl pretrain` first")
    if (path / "manifest.json").is_file():  # written by prefixrl.io.checkpoint: refuse a corrupt policy
        from prefixrl.io.checkpoint import verify_folder

        verify_folder(path, weights)
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
