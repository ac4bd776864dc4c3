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
CHARS = string.digits + "+-*=#. \n" + "abcdefgh"  # letters: the chain task's rare operations

# The generation prompt ends the prompt; whatever follows (a prefix, then the policy's tokens) is the
# assistant's response. An assistant message in the history is closed with EOS.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}" + USER + "{{ message['content'] }}"
    "{% else %}" + ASSISTANT + "{{ message['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}" + ASSISTANT + "{% endif %}"
)


# ChatML, as Qwen-family chat models use it: a prefix appended after the generation prompt is the start
# of the assistant's turn (inside its <think> block when the trace opens one).
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus() -> list[str]:
    """Text for training the byte-level BPE locally (no download): math prose, LaTeX, digits."""
    words = ["the", "answer", "is", "so", "we", "get", "let", "then", "compute", "sum", "product", "of", "and", "with", "because", "therefore", "first", "next", "finally", "step", "value", "total", "number", "fraction", "square", "root", "equals", "gives", "think"]
    latex = [r"\frac{1}{2}", r"\boxed{", r"\sqrt{", r"\cdot", r"^{2}", r"\pi", r"\left(", r"\right)", "$", "}"]
    lines = []
    for i in range(400):
        w = " ".join(words[(i * 7 + k) % len(words)] for k in range(8))
        lines.append(f"{w} {i} + {i * 3 % 17} = {i + i * 3 % 17}, {latex[i % len(latex)]} {latex[(i * 3) % len(latex)]}")
    return lines


def build_bytes_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE (any text round-trips) trained here on `_corpus`, with a ChatML chat template and
    <think> tokens: a stand-in for a real chat model's tokenizer in tests of the HF / TRL / verl paths."""
    from tokenizers import AddedToken, pre_tokenizers, trainers

    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(_corpus(), trainer)
    # Reasoning markers are ordinary added tokens (as in Qwen3): kept when a response is decoded.
    core.add_tokens([AddedToken("<think>", special=False), AddedToken("</think>", special=False)])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|pad|>",
        additional_special_tokens=["<|im_start|>"], padding_side="left",
        chat_template=CHATML_TEMPLATE, model_max_length=4096,
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
    elif kind == "bytes":
        return build_bytes_tokenizer()
    elif kind != "char":
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose char, pairs or bytes")
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
