"""Offline tiny models: a character-level tokenizer defined in code and a small Llama, no downloads.

    tok = make_char_tokenizer()                  # printable ASCII + <pad> <bos> <eos> <unk>
    model = make_tiny_llama(len(tok), seed=0)    # 2 layers, hidden 64: ≈ 95k parameters
    model.save_pretrained(d); tok.save_pretrained(d)       # safetensors; reload with AutoModel...
"""

from __future__ import annotations

import string

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

__all__ = ["CHARS", "CHAT_TEMPLATE", "SPECIAL_TOKENS", "make_char_tokenizer", "make_tiny_llama",
           "make_tiny_reward_model"]

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>"]  # ids 0..3
CHARS = string.digits + string.ascii_letters + string.punctuation + " \n"
#: A minimal chat template for the conversational code paths: "<bos>user: 3+4=\nassistant: 7<eos>";
#: an assistant turn ends with EOS (as real templates end it with their end-of-turn token).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}"
    "{{ eos_token if m['role'] == 'assistant' else '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def make_char_tokenizer(chars: str = CHARS, chat_template: bool = False) -> PreTrainedTokenizerFast:
    """Character-level ``PreTrainedTokenizerFast``: one token per character of ``chars``.

    Encoding a text prepends ``<bos>`` (like Llama tokenizers; ``add_special_tokens=False`` skips it);
    decoding concatenates characters. ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3.
    ``chat_template=True`` installs :data:`CHAT_TEMPLATE`.
    """
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("(?m)."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
        padding_side="left", clean_up_tokenization_spaces=False,
    )
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def _tiny_config(vocab_size, hidden, layers, heads, kv_heads, intermediate, max_positions, pad_token_id,
                 bos_token_id, eos_token_id, **extra) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads or heads,
        max_position_embeddings=max_positions, pad_token_id=pad_token_id, bos_token_id=bos_token_id,
        eos_token_id=eos_token_id, tie_word_embeddings=False, **extra,
    )


def make_tiny_reward_model(vocab_size: int, hidden: int = 64, layers: int = 2, heads: int = 4,
                           intermediate: int = 128, max_positions: int = 128, seed: int = 0,
                           pad_token_id: int = 0) -> LlamaForSequenceClassification:
    """A small ``LlamaForSequenceClassification`` with one label (a scalar reward r(x, y), read at the
    last non-pad token), same shape as :func:`make_tiny_llama`, seeded random weights (float32)."""
    config = _tiny_config(vocab_size, hidden, layers, heads, None, intermediate, max_positions, pad_token_id,
                          1, 2, num_labels=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForSequenceClassification(config)


def make_tiny_llama(
    vocab_size: int,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int | None = None,
    intermediate: int = 128,
    max_positions: int = 128,
    seed: int = 0,
    pad_token_id: int = 0,
    bos_token_id: int = 1,
    eos_token_id: int = 2,
) -> LlamaForCausalLM:
    """A small ``LlamaForCausalLM`` built from a ``LlamaConfig`` with seeded random weights (float32).

    Defaults give ≈ 95k parameters for the 100-token character vocabulary; ``kv_heads`` < ``heads``
    makes grouped-query attention. Token ids default to
    :func:`make_char_tokenizer`'s. The generation config samples nothing by default (greedy).
    """
    config = _tiny_config(vocab_size, hidden, layers, heads, kv_heads, intermediate, max_positions,
                          pad_token_id, bos_token_id, eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = pad_token_id
    model.generation_config.eos_token_id = eos_token_id
    model.generation_config.bos_token_id = bos_token_id
    return model
