"""vLLM's routed experts in saved OpenAI-compatible responses (`vllm serve --enable-return-routed-experts`).

A `/v1/completions` or `/v1/chat/completions` response carries, per choice, `routed_experts`: the base64 of a `.npy`
file (NumPy's format) holding an integer array [tokens, layers, top_k], one row per token that went through a forward
pass: the prompt's tokens, then the generated ones but the last (sampled, never forwarded). `usage.prompt_tokens`
says which rows are the prompt; a choice's `token_ids` (with `return_token_ids`), or `usage.completion_tokens` for a
single choice, how many were generated. A nested JSON list [tokens][layers][top_k] is accepted in place of the
base64 text. Each choice becomes one sequence: the prompt rows as prefill, the rest as decode.
"""
import numpy as np

from .npy import decode_base64, parse_ids
from .routing import build, check_grid, json_responses
from .trace import TraceError


def _array(value, where):
    """(shape, ids as an array of that shape) of a choice's routed_experts."""
    if isinstance(value, str):
        raw = decode_base64(value, where)
        return parse_ids(raw, where)
    if isinstance(value, list):
        tokens = value
        layers = len(tokens[0]) if tokens and isinstance(tokens[0], list) else 0
        top_k = len(tokens[0][0]) if layers and isinstance(tokens[0][0], list) else 0
        flat = []
        for t, row in enumerate(tokens):
            if not isinstance(row, list) or len(row) != layers:
                raise TraceError(f"{where}: token {t}: not a list of {layers} layers (ragged)")
            for l, cell in enumerate(row):
                if not isinstance(cell, list) or len(cell) != top_k:
                    raise TraceError(f"{where}: token {t}, layer {l}: not a list of {top_k} ids (ragged)")
                for i in cell:
                    if not isinstance(i, int) or isinstance(i, bool):
                        raise TraceError(f"{where}: token {t}, layer {l}: {i!r} is not an expert id")
                flat.extend(cell)
        if not layers or not top_k:
            raise TraceError(f"{where}: an empty routed-experts array")
        return (len(tokens), layers, top_k), np.array(flat).reshape(len(tokens), layers, top_k)  # ids past 64 bits: check_grid names them
    raise TraceError(f"{where}: expected base64 of a .npy array or a nested list, got {type(value).__name__}")


def _responses(path):
    for where, item in json_responses(path):
        if not isinstance(item, dict) or not isinstance(item.get("choices"), list) or not item["choices"]:
            raise TraceError(f"{where}: field 'choices' missing: not a saved vLLM completions response")
        usage = item.get("usage")
        if (not isinstance(usage, dict) or not isinstance(usage.get("prompt_tokens"), int)
                or isinstance(usage["prompt_tokens"], bool) or usage["prompt_tokens"] < 0):
            raise TraceError(f"{where}: field 'usage.prompt_tokens' missing or not a count")
        yield where, item


def import_responses(paths, experts, model=None):
    """A TraceBuilder with one sequence per choice of every response, in order (`build` says what -1 does)."""
    requests, shape0 = [], None
    for path in paths:
        for where, item in _responses(path):
            prompt = item["usage"]["prompt_tokens"]
            choices = item["choices"]
            for c, choice in enumerate(choices):
                field = f"{where}: field 'choices[{c}].routed_experts'"
                if not isinstance(choice, dict) or "routed_experts" not in choice or choice["routed_experts"] is None:
                    raise TraceError(f"{field} missing (serve with --enable-return-routed-experts)")
                shape, ids = _array(choice.pop("routed_experts"), field)  # popped: its text is freed once decoded
                rows, layers, top_k = shape
                if shape0 and shape[1:] != shape0[1:]:
                    raise TraceError(f"{field}: shape {shape} has other layers or top_k than the first response's {shape0}")
                shape0 = shape0 or shape
                generated = None
                if isinstance(choice.get("token_ids"), list):
                    generated = len(choice["token_ids"])
                elif len(choices) == 1 and isinstance(item["usage"].get("completion_tokens"), int) \
                        and not isinstance(item["usage"]["completion_tokens"], bool) and item["usage"]["completion_tokens"] >= 0:
                    generated = item["usage"]["completion_tokens"]
                forwarded = [prompt + generated - 1, prompt + generated] if generated else [prompt]
                if rows not in forwarded and not (generated is None and rows >= prompt):
                    raise TraceError(f"{field}: {rows} tokens of routing for {prompt} prompt and {generated} generated tokens")
                requests.append((f"{where}: choice {c}", 0, prompt, check_grid(ids, experts, field)))
    if not requests:
        raise TraceError("no responses given")
    _, layers, top_k = shape0
    return build(requests, layers, experts, top_k, model, "vLLM return routed_experts: " + ", ".join(paths))
