"""Tiny random decoders and a character tokenizer: fast stand-ins for real models in tests."""

import copy

import torch

VOCAB = 64


class CharTokenizer:
    """Maps each character to one token id; ids 1 and 2 are EOS and BOS."""

    eos_token_id = 1
    bos_token_id = 2

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        ids = [3 + ord(ch) % (VOCAB - 3) for ch in text]
        return {"input_ids": ([self.bos_token_id] if add_special_tokens else []) + ids}


def tiny_model(family: str, n_blocks: int = 6, seed: int = 0, attention: str = "sdpa"):
    """A random model with large enough weights that every block changes the loss, running the
    `attention` implementation of transformers (sdpa or eager)."""
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=n_blocks,
                  num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2)
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif family == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    elif family == "gemma3":
        # Window 5 is shorter than the test sequences, so sliding and global blocks really differ.
        pattern = ["sliding_attention", "sliding_attention", "full_attention"]
        config = Gemma3TextConfig(**common, head_dim=8, sliding_window=5,
                                  layer_types=(pattern * n_blocks)[:n_blocks])
        model = Gemma3ForCausalLM(config)
    else:
        raise ValueError(family)
    model.set_attn_implementation(attention)
    return model.eval()


def rebuilt_without(model, subset):
    """A deep copy of `model` with the blocks of `subset` physically deleted."""
    rebuilt = copy.deepcopy(model)
    keep = [i for i in range(len(model.model.layers)) if i not in set(subset)]
    rebuilt.model.layers = torch.nn.ModuleList([rebuilt.model.layers[i] for i in keep])
    rebuilt.config.num_hidden_layers = len(keep)
    if getattr(rebuilt.config, "layer_types", None):
        rebuilt.config.layer_types = [model.config.layer_types[i] for i in keep]
    for index, layer in enumerate(rebuilt.model.layers):
        layer.self_attn.layer_idx = index
    return rebuilt


def passages(count: int = 40) -> list[str]:
    return [f"passage {i}: the quick brown fox jumps over {i % 7} lazy dogs." for i in range(count)]


def items() -> list[dict]:
    """Multiple-choice items in the shipped schema, including a WinoGrande-like one whose
    options differ in the context and share the continuation."""
    return [
        {"task": "qa", "id": "qa-0", "gold": 1, "choices": [
            {"context": "Question: sky colour?\nAnswer:", "continuation": " green"},
            {"context": "Question: sky colour?\nAnswer:", "continuation": " blue"},
            {"context": "Question: sky colour?\nAnswer:", "continuation": " red and yellow"}]},
        {"task": "qa", "id": "qa-1", "gold": 0, "choices": [
            {"context": "Fire is", "continuation": " hot"},
            {"context": "Fire is", "continuation": " cold"}]},
        {"task": "fill", "id": "fill-0", "gold": 1, "choices": [
            {"context": "The cup fell because the cup", "continuation": " was pushed."},
            {"context": "The cup fell because the table", "continuation": " was pushed."}]},
        {"task": "qa", "id": "qa-2", "gold": 3, "choices": [
            {"context": "Pick four:", "continuation": " one"},
            {"context": "Pick four:", "continuation": " two"},
            {"context": "Pick four:", "continuation": " three"},
            {"context": "Pick four:", "continuation": " four"}]},
    ]


HF_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789 .,'?!-:;\n\"()"


def save_char_tokenizer(directory, shift: int = 0) -> None:
    """A Hugging Face tokenizer in `directory` (loadable with AutoTokenizer) mapping each
    lowercased character to one id below VOCAB; `shift` permutes the ids, as a tokenizer library
    that tokenises differently would."""
    from tokenizers import Tokenizer, models, normalizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "</s>": 1, "<s>": 2}
    for index, character in enumerate(HF_CHARACTERS):
        vocab[character] = 3 + (index + shift) % len(HF_CHARACTERS)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", eos_token="</s>",
                            bos_token="<s>").save_pretrained(directory)


def save_tiny_model_directory(directory, family: str = "llama", n_blocks: int = 4) -> None:
    """A local model directory (config, safetensors weights, tokenizer) that `--model` accepts."""
    tiny_model(family, n_blocks=n_blocks).save_pretrained(directory)
    save_char_tokenizer(directory)
