"""SGLang's routed experts (`--enable-return-routed-experts`, request field `return_routed_experts`).

Each saved response (a JSON object from `/generate`, or a list of them) carries `meta_info["routed_experts"]`: the
expert ids as base64 of little-endian int32, ordered by token, layer and top-k slot, -1 where a layer has no routed
expert (SGLang's documentation of the feature); `meta_info["prompt_tokens"]` and `["completion_tokens"]` count the
tokens. A JSON list of ids is accepted in place of the base64 string. One request becomes one sequence: its prompt
tokens the prefill, its generated tokens the decode.
"""

import numpy as np

from .npy import decode_base64
from .routing import build, check_grid, json_responses
from .trace import LAYERS, TOP_K, TraceError, whole


def _ids(value, where):
    if isinstance(value, str):
        raw = decode_base64(value, where)
        if len(raw) % 4:
            raise TraceError(f"{where}: {len(raw)} bytes, not a whole number of int32 ids")
        return np.frombuffer(raw, dtype="<i4")
    if isinstance(value, list):
        flat = []
        stack = [value]
        while stack:  # flatten nested lists in order
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(reversed(item))
            elif isinstance(item, int) and not isinstance(item, bool):
                flat.append(item)
            else:
                raise TraceError(f"{where}: {item!r} is not an expert id")
        return flat
    raise TraceError(f"{where}: expected base64 text or a list of ids, got {type(value).__name__}")


def _responses(path):
    for where, item in json_responses(path):
        if not isinstance(item, dict) or not isinstance(item.get("meta_info"), dict):
            raise TraceError(f"{where}: field 'meta_info' missing: not a saved SGLang response")
        meta = item["meta_info"]
        if "routed_experts" not in meta:
            raise TraceError(f"{where}: field 'meta_info.routed_experts' missing (serve with --enable-return-routed-experts "
                             "and ask with return_routed_experts=True)")
        for key in ("prompt_tokens", "completion_tokens"):
            if not isinstance(meta.get(key), int) or isinstance(meta[key], bool) or meta[key] < 0:
                raise TraceError(f"{where}: field 'meta_info.{key}' missing or not a count")
        yield where, meta


def import_responses(paths, layers, experts, top_k, model=None):
    """A TraceBuilder holding every response of `paths`, one sequence each, in order (`build` says what -1 does)."""
    whole(layers, "--layers", *LAYERS)
    whole(top_k, "--top-k", *TOP_K)
    requests = []
    for path in paths:
        for where, meta in _responses(path):
            ids = _ids(meta["routed_experts"], f"{where}: field 'meta_info.routed_experts'")
            cell = layers * top_k
            if len(ids) % cell:
                raise TraceError(f"{where}: field 'meta_info.routed_experts': {len(ids)} ids is not tokens x {layers} layers "
                                 f"x {top_k} slots (ragged)")
            rows = len(ids) // cell
            prompt, completion = meta["prompt_tokens"], meta["completion_tokens"]
            # The engine routes every prompt token and every generated token it fed back: the last one is sampled but
            # never forwarded, so some versions record one row fewer.
            if rows == prompt + completion:
                prefill = prompt
            elif rows == prompt + completion - 1 and completion > 0:
                prefill = prompt
            elif rows == completion:
                prefill = 0
            else:
                raise TraceError(f"{where}: field 'meta_info.routed_experts': {rows} tokens of routing for "
                                 f"{prompt} prompt and {completion} generated tokens")
            grid = check_grid(np.asarray(ids).reshape(rows, layers, top_k), experts, f"{where}: field 'meta_info.routed_experts'")
            requests.append((where, prompt - prefill, prefill, grid))
    if not requests:
        raise TraceError("no responses given")
    return build(requests, layers, experts, top_k, model, "SGLang return_routed_experts: " + ", ".join(paths))
