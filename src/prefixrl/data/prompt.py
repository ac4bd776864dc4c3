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
    r = rendering_of(tokenizer)
    enc = tokenizer.apply_chat_template(r.messages(question), add_generation_prompt=True, tokenize=True,
                                        **r.chat_template_kwargs)
    return list(enc["input_ids"] if hasattr(enc, "keys") else enc)


def encode_response(tokenizer: PreTrainedTokenizerBase, text: str, eos: bool = True) -> list[int]:
    ids = tokenizer.encode(text, add_special_tokens=False)
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
