"""Text <-> token ids at the two boundaries that matter: the prompt and the response.

The prompt is the model's own chat template with the generation prompt added; everything after it is
the assistant's response. A PrefixRL prompt is `render_prompt(question) + prefix_ids` (paper §3.4).
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase


def render_prompt(tokenizer: PreTrainedTokenizerBase, question: str) -> list[int]:
    enc = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=True
    )
    return list(enc["input_ids"] if hasattr(enc, "keys") else enc)


def encode_response(tokenizer: PreTrainedTokenizerBase, text: str, eos: bool = True) -> list[int]:
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids + [tokenizer.eos_token_id] if eos else ids


def decode_response(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True)


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Identity of a tokenizer's id space: a trace's ids mean something only under the same fingerprint."""
    import hashlib
    import json

    vocab = sorted(tokenizer.get_vocab().items())
    blob = json.dumps([vocab, tokenizer.eos_token, tokenizer.bos_token], ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
