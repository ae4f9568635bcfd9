"""What every importer shares: a grid of routed ids per request, [token][layer][slot] with -1 where a layer routes
nothing, checked and turned into one sequence per request."""
import json

from .trace import TraceBuilder, TraceError


def json_responses(path):
    """(where, item) for each saved response in a JSON file holding one object or a list of them; `where` names the
    file (and the list index) for errors."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
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
    """Rejects ids out of range and -1 padding beside ids in a [token][layer][slot] grid."""
    for t, row in enumerate(grid):
        for l, slot in enumerate(row):
            if -1 in slot and any(i != -1 for i in slot):
                raise TraceError(f"{where}: token {t}, layer {l}: -1 padding beside expert ids {list(slot)}")
            for i in slot:
                if i < -1 or i >= experts:
                    raise TraceError(f"{where}: token {t}, layer {l}: expert id {i} out of range 0..<{experts}")


def build(requests, layers, experts, top_k, model, source):
    """A TraceBuilder from (where, first position, prefill rows, grid) per request, one sequence each.

    Layers whose every slot of every token is -1 (not MoE layers) are left out; a cell of -1 on some tokens only is
    a null cell."""
    moe = [l for l in range(layers) if any(any(i != -1 for i in grid[t][l]) for _, _, _, grid in requests for t in range(len(grid)))]
    if not moe:
        raise TraceError(f"{requests[0][0]}: every routed expert id is -1: not a MoE model's routing")
    skipped = layers - len(moe)
    builder = TraceBuilder(layers=len(moe), experts=experts, top_k=top_k, model=model, source=source,
                           notes=f"{skipped} of {layers} layers without routed experts left out" if skipped else "")
    for seq, (where, first_pos, prefill, grid) in enumerate(requests):
        for t, row in enumerate(grid):
            cells = [None if row[l][0] == -1 else list(row[l]) for l in moe]
            builder.add(seq=seq, pos=first_pos + t, phase="prefill" if t < prefill else "decode", experts=cells,
                        where=f"{where}: token {t}")
    return builder
