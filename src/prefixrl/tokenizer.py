"""The embedded model's tokenizer: one token per character, built locally, saved in HF format.

It is a real `PreTrainedTokenizerFast` with BOS/EOS/PAD and a chat template, so transformers,
TRL and vLLM load it from the model folder like any other tokenizer.
"""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
USER, ASSISTANT = "<|user|>", "<|assistant|>"
CHARS = string.digits + "+-*=#. \n"

# The generation prompt ends the prompt; whatever follows (a prefix, then the policy's tokens) is the
# assistant's response. An assistant message in the history is closed with EOS.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}" + USER + "{{ message['content'] }}"
    "{% else %}" + ASSISTANT + "{{ message['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}" + ASSISTANT + "{% endif %}"
)


def build_tokenizer(kind: str = "char") -> PreTrainedTokenizerFast:
    """`char`: one token per character (the embedded model's). `pairs`: a different tokenizer for
    cross-family experiments — BPE merges make "<digit><space>", "#<digit>", "<op><digit>" and ".."
    single tokens (a question slot is still one fixed-size unit), and the id order differs, so its ids
    mean nothing to a `char` model."""
    specials = [PAD, BOS, EOS, UNK, USER, ASSISTANT]
    merges: list[tuple[str, str]] = []
    pieces = list(CHARS)
    if kind == "pairs":
        merges = [(d, " ") for d in "0123456789"] + [("#", d) for d in "0123456789"]
        merges += [(op, d) for op in "+-*" for d in "0123456789"] + [(".", ".")]
        pieces = list(reversed(CHARS)) + [a + b for a, b in merges]
    elif kind != "char":
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose char or pairs")
    vocab = {tok: i for i, tok in enumerate(specials + pieces)}
    # BPE without a pre-tokenizer: the text is one word, split into characters, then merged (if any).
    core = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=UNK))
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[USER, ASSISTANT],
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
    )
    return tok
