"""Chat templates: render chat messages into the raw prompt string TGI's ``/generate`` expects.

Small pure functions instead of the tokenizer's Jinja template, so the SageMaker client needs no
``transformers``. No BOS token is added: TGI's tokenizer prepends it (a second one hurts Llama 3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from llm_twin.llm.base import ChatMessage

ChatTemplate = Callable[[Sequence[ChatMessage]], str]

ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
)


def llama3(messages: Sequence[ChatMessage]) -> str:
    """Llama 3 / 3.1 header format, ending with an open assistant turn."""
    turns = [f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>" for m in messages]
    return "".join(turns) + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def chatml(messages: Sequence[ChatMessage]) -> str:
    """ChatML (Qwen, many fine-tunes)."""
    turns = [f"<|im_start|>{m['role']}\n{m['content'].strip()}<|im_end|>\n" for m in messages]
    return "".join(turns) + "<|im_start|>assistant\n"


def alpaca(messages: Sequence[ChatMessage]) -> str:
    """Alpaca instruction format (what the LLM Engineer's Handbook fine-tuned TwinLlama on).

    System text joins the preamble; earlier turns are folded into the instruction.
    """
    system = " ".join(m["content"].strip() for m in messages if m["role"] == "system")
    instruction = "\n\n".join(m["content"].strip() for m in messages if m["role"] != "system")
    preamble = f"{ALPACA_PREAMBLE} {system}".strip()
    return f"{preamble}\n\n### Instruction:\n{instruction}\n\n### Response:\n"


TEMPLATES: dict[str, ChatTemplate] = {"llama3": llama3, "chatml": chatml, "alpaca": alpaca}


def template_for(name: str, model_id: str = "") -> ChatTemplate:
    """``name`` from settings; ``auto`` guesses from the model id and defaults to Llama 3."""
    if name == "auto":
        name = "chatml" if "qwen" in model_id.lower() else "llama3"
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown chat template {name!r} (known: auto, {', '.join(TEMPLATES)})") from None
