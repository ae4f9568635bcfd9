"""Routed experts saved as NumPy `.npy` arrays of shape [tokens, layers, top_k] (what vLLM's and SGLang's
`routed_experts` hold per request once decoded), read from the format's specification (NumPy's NEP 1: magic
`\\x93NUMPY`, version, a header dict with `descr`, `fortran_order`, `shape`, then the data), checked before numpy
looks at the data.
One file is one request; its first `prompt_tokens` rows are the prompt (prefill), the rest generated (decode).
"""
import ast
import binascii
import re
import struct

import numpy as np

from .routing import build, check_grid
from .trace import LAYERS, ROUTED_IDS, TOKENS, TOP_K, TraceError

_INTS = {"i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I", "i8": "q", "u8": "Q"}


def read_ids(path):
    """(shape, ids as an array of that shape) of an integer `.npy` file in C order."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TraceError(f"{path}: cannot read: {e}") from None
    return parse_ids(data, path)


_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def decode_base64(text, where):
    """The bytes of strict base64 `text` (what `base64.b64decode(text, validate=True)` accepts), without the
    ASCII copy of the text that it makes: a response's array can be hundreds of megabytes."""
    if not _BASE64.fullmatch(text):
        raise TraceError(f"{where}: not base64: a character outside the base64 alphabet")
    try:
        return binascii.a2b_base64(text)
    except binascii.Error as e:
        raise TraceError(f"{where}: not base64: {e}") from None


def parse_ids(data, path):
    """(shape, ids as an array of that shape) of `.npy` bytes; `path` names them in errors."""
    if not data.startswith(b"\x93NUMPY") or len(data) < 10:
        raise TraceError(f"{path}: not a .npy array (no \\x93NUMPY magic)")
    major = data[6]
    if major == 1:
        (length,), start = struct.unpack("<H", data[8:10]), 10
    elif major in (2, 3):
        (length,), start = struct.unpack("<I", data[8:12]), 12
    else:
        raise TraceError(f"{path}: .npy version {major} is not supported")
    try:
        header = ast.literal_eval(data[start:start + length].decode("latin1"))
        descr, fortran, shape = header["descr"], header["fortran_order"], tuple(header["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError):
        raise TraceError(f"{path}: field 'header': not a .npy header dict with descr, fortran_order, shape") from None
    if not isinstance(descr, str) or descr[1:] not in _INTS or descr[0] not in "<|=":
        raise TraceError(f"{path}: field 'descr': {descr!r} is not a little-endian integer type (expert ids)")
    if fortran:
        raise TraceError(f"{path}: field 'fortran_order': Fortran order is not supported (save np.ascontiguousarray)")
    if len(shape) != 3 or any(not isinstance(n, int) or isinstance(n, bool) for n in shape):
        raise TraceError(f"{path}: field 'shape': {shape} is not [tokens, layers, top_k] (three whole numbers)")
    # Bounded before anything is allocated: a zero dimension makes an empty body match any other dimension.
    for name, n, (low, high) in (("tokens", shape[0], (1, TOKENS)), ("layers", shape[1], LAYERS), ("top_k", shape[2], TOP_K)):
        if not low <= n <= high:
            raise TraceError(f"{path}: field 'shape': {name} {n} is outside {low}..{high} (moesim's trace limits)")
    count = shape[0] * shape[1] * shape[2]
    if count > ROUTED_IDS:
        raise TraceError(f"{path}: field 'shape': {shape} holds {count} routed ids; a moesim trace holds at most {ROUTED_IDS}")
    code = _INTS[descr[1:]]
    body = memoryview(data)[start + length:]  # no copy of the data
    size = struct.calcsize("<" + code)
    if len(body) != count * size:
        raise TraceError(f"{path}: field 'data': {len(body)} bytes for shape {shape} of {descr} (truncated or ragged)")
    return shape, np.frombuffer(body, dtype=np.dtype("<" + descr[1:])).reshape(shape)


def import_arrays(paths, prompt_tokens, experts, model=None, engine="vLLM/SGLang routed_experts"):
    """A TraceBuilder with one sequence per `.npy` file; `prompt_tokens` holds one count per file (or one for all)."""
    if len(prompt_tokens) not in (1, len(paths)):
        raise TraceError(f"--prompt-tokens: {len(prompt_tokens)} counts for {len(paths)} files (give one, or one per file)")
    requests, shape0 = [], None
    for n, path in enumerate(paths):
        shape, ids = read_ids(path)
        tokens, layers, top_k = shape
        if shape0 and shape[1:] != shape0[1:]:
            raise TraceError(f"{path}: field 'shape': {shape} has other layers or top_k than {paths[0]}'s {shape0}")
        shape0 = shape0 or shape
        prompt = prompt_tokens[n if len(prompt_tokens) > 1 else 0]
        if not 0 <= prompt <= tokens:
            raise TraceError(f"{path}: --prompt-tokens {prompt} for an array of {tokens} tokens")
        requests.append((path, 0, prompt, check_grid(ids, experts, f"{path}: field 'data'")))
    if not requests:
        raise TraceError("no arrays given")
    _, layers, top_k = shape0
    return build(requests, layers, experts, top_k, model, f"{engine} arrays: " + ", ".join(paths))
