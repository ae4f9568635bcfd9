"""`moesim-trace tiny-model`: a small randomly initialised MoE model of a real family, with a byte-level tokenizer,
saved like a Hub checkpoint, so that `record` can be tried (and tested) with no download."""
from .trace import TraceError

FAMILIES = ("mixtral", "qwen2-moe", "qwen3-moe", "olmoe")


def tiny_config(family, layers=4, experts=8, top_k=2, hidden=64, vocab=260):
    """The transformers config of a tiny model of `family`; expert weights are small, the routing is the family's."""
    try:
        import transformers
    except ImportError:
        raise TraceError("tiny-model needs torch and transformers: pip install torch transformers") from None
    if family not in FAMILIES:
        raise TraceError(f"--family {family!r}: one of {', '.join(FAMILIES)}")
    if not 1 <= top_k <= experts:
        raise TraceError(f"--top-k {top_k}: must be between 1 and --experts ({experts})")
    shared = dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                  num_key_value_heads=2, num_experts_per_tok=top_k, max_position_embeddings=4096,
                  bos_token_id=256, eos_token_id=257, pad_token_id=257, tie_word_embeddings=False)
    if family == "mixtral":
        return transformers.MixtralConfig(intermediate_size=2 * hidden, num_local_experts=experts, **shared)
    if family == "qwen2-moe":
        return transformers.Qwen2MoeConfig(intermediate_size=2 * hidden, moe_intermediate_size=hidden // 2,
                                           shared_expert_intermediate_size=hidden, num_experts=experts,
                                           norm_topk_prob=False, **shared)
    if family == "qwen3-moe":
        return transformers.Qwen3MoeConfig(intermediate_size=2 * hidden, moe_intermediate_size=hidden // 2,
                                           num_experts=experts, head_dim=hidden // 4, norm_topk_prob=True, **shared)
    return transformers.OlmoeConfig(intermediate_size=hidden // 2, num_experts=experts, norm_topk_prob=False, **shared)


def tiny_model(config, seed=0, std=0.5):
    """A model from `config` with every weight drawn from N(0, std²) under `seed` (a larger std than the default
    initialisation, so that routing differs from token to token)."""
    import torch
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, std)
    return model.eval()


def byte_tokenizer():
    """A byte-level tokenizer: ids 0..255 are bytes, 256 `<s>`, 257 `</s>`; needs no vocabulary file."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    byte_to_unicode = sorted(alphabet, key=lambda c: _byte_of(c))
    vocab = {c: i for i, c in enumerate(byte_to_unicode)}
    vocab.update({"<s>": 256, "</s>": 257})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="</s>")


def _byte_of(char):
    """The byte GPT-2's byte-to-unicode table maps to `char` (printable bytes map to themselves)."""
    code = ord(char)
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    if code in printable:
        return code
    others = [b for b in range(256) if b not in printable]
    return others[code - 256]


def write_tiny_model(family, out, layers=4, experts=8, top_k=2, seed=0):
    """Writes the model and its tokenizer to directory `out`."""
    config = tiny_config(family, layers=layers, experts=experts, top_k=top_k)
    model = tiny_model(config, seed=seed)
    model.save_pretrained(out)
    byte_tokenizer().save_pretrained(out)
    return model
