"""Build tiny causal LMs offline: a byte-level BPE tokenizer and random weights, in two styles.

They stand in for the hub models on a laptop or CI.
- ``qwen2``: Qwen2 architecture, Qwen2.5's ChatML layout with its default system prompt, tied
  input/output embeddings like Qwen2.5-1.5B. The BPE uses Qwen2's own normalizer and pre-tokenizer,
  because transformers reloads a ``qwen2`` model's tokenizer as ``Qwen2Tokenizer``, which rebuilds
  them; a different pre-tokenizer would change the ids.
- ``llama3``: Llama architecture, Llama 3.1's header/eot chat layout (with its dated system header),
  no pad token (as Llama ships), untied embeddings like Llama-3.1-8B.
"""

from __future__ import annotations

import argparse
from pathlib import Path

QWEN_SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2's pre-tokenizer split pattern (contractions, letters, single digits, punctuation, spaces).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# ChatML, as Qwen2.5 renders it: a default system turn when none is given.
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\n" + QWEN_SYSTEM_PROMPT + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


LLAMA3_SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|finetune_right_pad_id|>",
]
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Llama 3.2's layout: a system header with its knowledge date and "Today Date", which is the caller's
# `date_string`, else today's date (`strftime_now`, as transformers provides it), else Llama 3.1's
# fixed 26 Jul 2024; contents trimmed, <|eot_id|> ends a turn.
LLAMA3_CHAT_TEMPLATE = (
    "{%- if date_string is not defined %}"
    "{%- if strftime_now is defined %}{%- set date_string = strftime_now('%d %b %Y') %}"
    "{%- else %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
    "{%- endif %}"
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] | trim %}{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\nToday Date: ' + date_string + '\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


def _corpus() -> list[str]:
    from workflow_scripts.demo import sample_data

    texts = [QWEN_SYSTEM_PROMPT, "Question: Answer: Q: A: So the answer is", "0123456789 ABCD"]
    for generate in sample_data.GENERATORS.values():
        for row in generate(200).to_dict("records"):
            texts.extend(str(v) for v in row.values())
    return texts


def _train_bpe(split_pattern: str, special_tokens: list[str], vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split_pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    return tokenizer


# Per style: the pre-tokenizer split, the special tokens, and what the tokenizer declares of them.
TOKENIZER_STYLES = {
    "qwen2": (
        QWEN2_SPLIT,
        SPECIAL_TOKENS,
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": CHAT_TEMPLATE},
    ),
    "llama3": (
        LLAMA3_SPLIT,
        LLAMA3_SPECIAL_TOKENS,
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": LLAMA3_CHAT_TEMPLATE},
    ),
}


def build_tokenizer(style: str = "qwen2", vocab_size: int = 1024):
    from transformers import PreTrainedTokenizerFast

    if style not in TOKENIZER_STYLES:
        raise ValueError(f"unknown tiny model style {style!r}; use one of {sorted(TOKENIZER_STYLES)}")
    split, special_tokens, declared = TOKENIZER_STYLES[style]
    return PreTrainedTokenizerFast(
        tokenizer_object=_train_bpe(split, special_tokens, vocab_size), model_max_length=4096, **declared
    )


def build(
    out_dir,
    style: str = "qwen2",
    hidden_size: int = 64,
    layers: int = 2,
    seed: int = 0,
    attention_heads: int = 4,
    initializer_range: float = 0.02,
) -> Path:
    """``attention_heads=1`` gives head_dim 64, the smallest that vLLM's CPU attention kernels accept
    (16 is refused). At the usual ``initializer_range`` (0.02) greedy decoding emits the same token
    for every prompt; 0.2 makes generations differ between prompts (a comparison of two engines'
    greedy outputs then means something)."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig, Qwen2Config

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(style)
    shape = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=attention_heads,
        num_key_value_heads=max(1, attention_heads // 2),
        max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=initializer_range,
    )
    if style == "qwen2":
        config = Qwen2Config(**shape, tie_word_embeddings=True, bos_token_id=None, pad_token_id=tokenizer.pad_token_id)
    else:
        config = LlamaConfig(**shape, tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--style", default="qwen2", choices=["qwen2", "llama3"])
    args = parser.parse_args(argv)
    print(f"tiny {args.style} model written to {build(args.out_dir, args.style)}")


if __name__ == "__main__":
    main()
