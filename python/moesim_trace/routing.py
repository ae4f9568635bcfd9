"""What every importer shares: a grid of routed ids per request, [token][layer][slot] with -1 where a layer routes
nothing, checked and turned into one sequence per request."""
import json

import numpy as np

from .trace import TraceBuilder, TraceError


def json_responses(path):
    """(where, item) for each saved response in a JSON file holding one object or a list of them; `where` names the
    file (and the list index) for errors."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        text = raw.decode("utf-8")
        del raw  # one copy of a large response at a time: the bytes, the text, then the parsed value
        data = json.loads(text)
        del text
    except (OSError, UnicodeDecodeError) as e:
        raise TraceError(f"{path}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise TraceError(f"{path}: not a JSON response (line {e.lineno}: {e.msg})") from None
    except RecursionError:
        raise TraceError(f"{path}: JSON nested too deeply to be a response") from None
    if not isinstance(data, list):
        yield path, data
        return
    for n, item in enumerate(data):
        yield f"{path}[{n}]", item


def check_grid(grid, experts, where):
    """Rejects ids out of range and -1 padding beside ids in a [token][layer][slot] grid (nested lists or an integer
    array); returns it as an array. The first bad cell in token order is named."""
    try:
        ids = np.asarray(grid)
    except (ValueError, OverflowError, TypeError):
        ids = None
    original = ids
    if ids is not None and ids.dtype == object and all(isinstance(i, int) and not isinstance(i, bool) for i in ids.flat):
        # Ids beyond 64 bits (numpy keeps them as Python ints): out of range like any id past the experts, checked
        # through a stand-in of the same sign; errors quote the original cell.
        ids = np.array([min(max(i, -2), experts) for i in ids.flat], dtype=np.int64).reshape(ids.shape)
    if ids is None or ids.dtype.kind not in "iu":
        raise TraceError(f"{where}: routing is not a rectangular [token][layer][slot] grid of whole numbers")
    if ids.ndim != 3:
        raise TraceError(f"{where}: routing is not a [token][layer][slot] grid (shape {ids.shape})")
    for start in range(0, len(ids), _CHECK_TOKENS):  # in pieces: the scratch masks stay small
        _check_cells(ids[start:start + _CHECK_TOKENS], start, experts, where, original[start:start + _CHECK_TOKENS])
    return ids.astype(np.int32, copy=False)  # every id is in -1..<experts now


_CHECK_TOKENS = 8192


def _check_cells(ids, first, experts, where, original):
    """`check_grid` on tokens first, first + 1, … of a grid; errors quote the cell of `original`."""
    padding = ids == -1
    mixed = padding.any(axis=2) & ~padding.all(axis=2)
    outside = ((ids < -1) | (ids >= experts)).any(axis=2)
    bad = mixed | outside
    if bad.any():
        t, l = (int(n) for n in np.argwhere(bad)[0])
        slot = list(original[t, l].tolist())
        if mixed[t, l]:
            raise TraceError(f"{where}: token {first + t}, layer {l}: -1 padding beside expert ids {slot}")
        i = next(i for i in slot if i < -1 or i >= experts)
        raise TraceError(f"{where}: token {first + t}, layer {l}: expert id {i} out of range 0..<{experts}")


def build(requests, layers, experts, top_k, model, source):
    """A TraceBuilder from (where, first position, prefill rows, grid) per request, one sequence each; a grid is
    [token][layer][slot], nested lists or an integer array, checked by `check_grid`.

    Layers whose every slot of every token is -1 (not MoE layers) are left out; a cell of -1 on some tokens only is
    a null cell."""
    grids = [np.asarray(grid).reshape(-1, layers, top_k) for _, _, _, grid in requests]
    routed = np.zeros(layers, dtype=bool)
    for grid in grids:
        for start in range(0, len(grid), _CHECK_TOKENS):
            routed |= (grid[start:start + _CHECK_TOKENS] != -1).any(axis=(0, 2))
    moe = np.flatnonzero(routed)
    if not len(moe):
        raise TraceError(f"{requests[0][0]}: every routed expert id is -1: not a MoE model's routing")
    skipped = layers - len(moe)
    builder = TraceBuilder(layers=len(moe), experts=experts, top_k=top_k, model=model, source=source,
                           notes=f"{skipped} of {layers} layers without routed experts left out" if skipped else "")
    for seq, ((where, first_pos, prefill, _), grid) in enumerate(zip(requests, grids)):
        builder.add_block(seq=seq, first_pos=first_pos, prefill=prefill, ids=grid[:, moe, :] if skipped else grid,
                          where=where)
    return builder
