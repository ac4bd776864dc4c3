"""Text <-> token ids at the two boundaries that matter: the prompt and the response.

The prompt is the model's own chat template with the generation prompt added; everything after it is
the assistant's response. A PrefixRL prompt is `render_prompt(question) + prefix_ids` (paper §3.4).

How a question becomes a prompt is one `Rendering`: an optional system prompt, an instruction template
around the question, and the chat template's own arguments (e.g. Qwen3's `enable_thinking`). It rides
on the tokenizer (`with_rendering`), so every stage that renders through that tokenizer renders alike,
and its fingerprint (the template's text, the rendering and the tokenizer's id space) is stored with
every trace store, prefix store, policy and export. A prefix cut under one rendering and trained under
another would continue a response the model never started: the stages refuse that (`check_rendering`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from transformers import PreTrainedTokenizerBase

from prefixrl.io.errors import BadInput


@dataclass(frozen=True)
class Rendering:
    system_prompt: str | None = None
    instruction: str = "{question}"  # the user turn: a template with one {question}
    chat_template_kwargs: dict = field(default_factory=dict)  # passed to apply_chat_template as they are

    def __post_init__(self) -> None:
        try:
            filled = self.instruction.format(question="")
        except (KeyError, IndexError, ValueError) as e:
            raise BadInput(f"--instruction must be a template with one {{question}} and no other field ({e})") from None
        if "{question}" not in self.instruction or filled == self.instruction:
            raise BadInput("--instruction must contain {question}, where the problem's text goes")

    def messages(self, question: str) -> list[dict]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [{"role": "user", "content": self.instruction.format(question=question)}]

    @property
    def plain(self) -> bool:
        return self == Rendering()


def with_rendering(tokenizer: PreTrainedTokenizerBase, rendering: Rendering) -> PreTrainedTokenizerBase:
    tokenizer.prefixrl_rendering = rendering
    return tokenizer


def rendering_of(tokenizer: PreTrainedTokenizerBase) -> Rendering:
    return getattr(tokenizer, "prefixrl_rendering", None) or Rendering()


def render_prompt(tokenizer: PreTrainedTokenizerBase, question: str) -> list[int]:
    """The prompt's ids. Text in the messages is data: where a message holds a special token's text (a
    question with `<|im_end|>`, `<|endoftext|>`), the template is rendered around placeholders and each
    message's text encoded with special tokens split, so it cannot close a turn or forge one."""
    r = rendering_of(tokenizer)
    messages = r.messages(question)
    if not any(control_text(tokenizer, m["content"]) for m in messages):
        enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                            **r.chat_template_kwargs)
        return list(enc["input_ids"] if hasattr(enc, "keys") else enc)
    marks = [f"\ue000{i}\ue001" for i in range(len(messages))]  # private-use characters: in no template
    text = tokenizer.apply_chat_template([{**m, "content": k} for m, k in zip(messages, marks)],
                                         add_generation_prompt=True, tokenize=False, **r.chat_template_kwargs)
    ids, pos = [], 0
    for m, k in zip(messages, marks):
        at = text.find(k, pos)
        if at < 0:
            raise BadInput(f"the chat template does not place the {m['role']} turn's text as it is given; a "
                           "question holding special-token text cannot be rendered safely with it")
        ids += tokenizer.encode(text[pos:at], add_special_tokens=False)
        ids += tokenizer.encode(m["content"], add_special_tokens=False, split_special_tokens=True)
        pos = at + len(k)
    return ids + tokenizer.encode(text[pos:], add_special_tokens=False)


def control_text(tokenizer: PreTrainedTokenizerBase, text: str) -> str | None:
    """The first special token's text that `text` holds (None if none): encoded as it is, it would become
    that control token. (Added tokens that are not special, such as Qwen3's <think>, are ordinary text to
    the tokenizer and are not looked for.)"""
    return next((s for s in _special_texts(tokenizer) if s in text), None)


def _special_texts(tokenizer: PreTrainedTokenizerBase) -> tuple[str, ...]:
    cached = getattr(tokenizer, "prefixrl_special_texts", None)
    if cached is None:
        texts = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
        cached = tuple(sorted(texts | set(tokenizer.all_special_tokens), key=len, reverse=True))
        tokenizer.prefixrl_special_texts = cached
    return cached


def encode_response(tokenizer: PreTrainedTokenizerBase, text: str, eos: bool = True) -> list[int]:
    """A response's ids; special-token text in it is data (split), never a control token: an imported trace
    that writes `<|im_end|>` mid-way must not end its turn there."""
    ids = tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
    return ids + [tokenizer.eos_token_id] if eos else ids


def decode_response(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True)


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Identity of a tokenizer's id space: a trace's ids mean something only under the same fingerprint."""
    vocab = sorted(tokenizer.get_vocab().items())
    blob = json.dumps([vocab, tokenizer.eos_token, tokenizer.bos_token], ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def rendering_record(tokenizer: PreTrainedTokenizerBase) -> dict:
    """What a prompt's rendering is a function of, with its fingerprint: stored beside every prompt made."""
    r = rendering_of(tokenizer)
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else json.dumps(tokenizer.chat_template)
    record = {**asdict(r), "chat_template_sha256": hashlib.sha256((template or "").encode()).hexdigest()[:16],
              "tokenizer": tokenizer_fingerprint(tokenizer)}
    blob = json.dumps(record, sort_keys=True, ensure_ascii=True, default=str)
    return {"fingerprint": hashlib.sha256(blob.encode()).hexdigest()[:16], **record}


def describe(record: dict) -> str:
    parts = [f"system prompt {record.get('system_prompt')!r}", f"instruction {record.get('instruction')!r}",
             f"chat-template kwargs {json.dumps(record.get('chat_template_kwargs') or {}, sort_keys=True)}",
             f"template {record.get('chat_template_sha256')}"]
    return f"{record.get('fingerprint')} ({', '.join(parts)})"


def check_rendering(stored: dict | None, tokenizer: PreTrainedTokenizerBase, what: str, allow: bool = False) -> None:
    """Refuse (one line naming both) an input whose prompts were rendered otherwise than this stage renders
    them, unless `allow` (--allow-rerender: prompts are then rendered anew, the stored response ids kept).
    An input saved before renderings were recorded has none: it was rendered plainly."""
    ours = rendering_record(tokenizer)
    if stored is None:
        stored = {**asdict(Rendering()), "fingerprint": None}
        if rendering_of(tokenizer).plain:
            return
    if stored.get("fingerprint") == ours["fingerprint"] or allow:
        return
    raise BadInput(f"{what}: its prompts were rendered as {describe(stored)}, this stage renders them as "
                   f"{describe(ours)}; pass the same --system-prompt/--instruction/--chat-template-kwargs, or "
                   "--allow-rerender to render the prompts anew around the stored token ids")
