"""SGLang's expert distribution recorder in `per_token` mode (`--expert-distribution-recorder-mode per_token`, then
`/start_expert_distribution_record`, `/stop_…`, `/dump_…`): `torch.save` files `expert_distribution_recorder_*.pt`
in `SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR`, one per rank, each a dict with `records` (one per forward pass) and
`last_physical_to_logical_map` ([layers, physical experts]).

A record holds `forward_mode` (1 extend, 2 decode, 3 mixed, 4 idle), `positions` and `input_ids` of its tokens,
`extend_seq_lens` (tokens per request in an extend pass) and `topk_ids_of_layer`: physical expert ids
[layers, tokens, 8], -1 beyond a model's top-k and on layers without routed experts. The dump has no request ids,
so sequences are rebuilt from positions: an extend segment at position 0, or one no running request reaches, starts
a sequence (a later start means a prefix-cache hit); a segment continuing a request's positions extends it (chunked
prefill); decode tokens are matched in order to the running requests, as SGLang keeps its running batch in order
(a request passed over has finished). Extend tokens are prefill, decode tokens decode; in a mixed pass a one-token
segment continuing a request is its decode token. Sequences are written in order of their first token.
"""
import glob
import os

from .routing import build, check_grid
from .trace import ROUTED_IDS, TOKENS, TraceError

EXTEND, DECODE, MIXED, IDLE = 1, 2, 3, 4


def _torch():
    try:
        import torch
    except ImportError:
        raise TraceError("import sglang-dump needs torch to read torch.save files: pip install torch") from None
    return torch


def dump_files(paths):
    """The recorder's files: those given, and `expert_distribution_recorder_*.pt` inside given directories."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(glob.glob(os.path.join(path, "expert_distribution_recorder_*.pt")))
            if not found:
                raise TraceError(f"{path}: no expert_distribution_recorder_*.pt files")
            files.extend(found)
        else:
            files.append(path)
    return files


def _load(path):
    torch = _torch()
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except Exception as e:  # torch raises many kinds for a file of another format
        raise TraceError(f"{path}: not a torch.save file of the expert distribution recorder ({type(e).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        raise TraceError(f"{path}: field 'records' missing: not a per_token dump of SGLang's expert distribution recorder")
    return data


class _Sequence:
    def __init__(self, where, first_pos):
        self.where, self.first_pos, self.next_pos = where, first_pos, first_pos
        self.rows, self.prefill, self.decoding = [], 0, False


class _Requests:
    """Rebuilds requests from positions alone (the module's note): which sequence each segment of a pass belongs to."""

    def __init__(self):
        self.sequences, self.running, self.cursor = [], [], 0

    def start_pass(self):
        self.cursor = 0

    def place(self, mode, first, length, where):
        """(sequence, whether the segment is decode tokens) for `length` tokens from position `first`."""
        if mode == DECODE:
            while self.cursor < len(self.running) and self.running[self.cursor].next_pos != first:
                self.running.pop(self.cursor)  # passed over: finished
            if self.cursor == len(self.running):
                raise TraceError(f"{where}: a decode token at position {first} that no running request reaches")
            self.cursor += 1
            return self.running[self.cursor - 1], True
        if first > 0:
            sequence = next((s for s in self.running if s.next_pos == first and (length == 1 or not s.decoding)), None)
            decode = mode == MIXED and length == 1 and sequence is not None
            if sequence is not None and (decode or not sequence.decoding):
                return sequence, decode
        sequence = _Sequence(where, first)  # a new request (a start after 0 is a prefix-cache hit)
        self.sequences.append(sequence)
        self.running.append(sequence)
        return sequence, False


def _cells(ids, where, top_k):
    """A [layer][slot] grid row from the padded ids of one token: ids first, then -1; a layer of -1 is a null cell."""
    row = []
    for layer, slots in enumerate(ids):
        used = [i for i in slots if i != -1]
        if used and slots[:len(used)] != used:
            raise TraceError(f"{where}, layer {layer}: -1 padding before expert ids {slots}")
        if used and top_k[0] is None:
            top_k[0] = len(used)
        if used and len(used) != top_k[0]:
            raise TraceError(f"{where}, layer {layer}: {len(used)} ids where other tokens have {top_k[0]}")
        row.append(used)
    return row


def _id_tensor(value, where, field, dims):
    """`value` if it is a tensor of whole numbers with `dims` dimensions whose storage holds every value it shows (a
    broadcast view of a few stored values could show more than memory holds), else a TraceError naming `field`."""
    torch = _torch()
    if not torch.is_tensor(value) or value.dim() != dims:
        raise TraceError(f"{where}: field '{field}': not a {dims}-dimensional tensor")
    if value.dtype not in (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64):
        raise TraceError(f"{where}: field '{field}': {value.dtype} values; expert ids are whole numbers (an integer tensor)")
    if value.numel() > ROUTED_IDS or value.numel() > value.untyped_storage().nbytes() // value.element_size():
        raise TraceError(f"{where}: field '{field}': shape {list(value.shape)} shows more values than the file stores")
    return value


def _logical_ids(ids, mapping, layers, where, path):
    """[token][layer][slot] logical ids of a record's `topk_ids_of_layer`, checked, through the physical map."""
    torch = _torch()
    _id_tensor(ids, where, "topk_ids_of_layer", 3)
    if ids.shape[0] != layers:
        raise TraceError(f"{where}: field 'topk_ids_of_layer': {ids.shape[0]} layers, earlier records have {layers}")
    if ids.numel() and int(ids.min()) < -1:
        raise TraceError(f"{where}: field 'topk_ids_of_layer': id {int(ids.min())} below -1")
    if mapping is not None:
        if mapping.shape[0] != layers:
            raise TraceError(f"{path}: field 'last_physical_to_logical_map': {mapping.shape[0]} layers, the records have {layers}")
        largest = int(ids.max()) if ids.numel() else -1
        if largest >= mapping.shape[1]:
            raise TraceError(f"{where}: field 'topk_ids_of_layer': physical expert {largest} beyond the map's {mapping.shape[1]}")
        physical = ids.clamp(min=0).long().reshape(layers, -1)
        ids = torch.where(ids >= 0, torch.gather(mapping.long(), 1, physical).reshape(ids.shape), ids)
    return ids.permute(1, 0, 2).tolist()


def _segment_lengths(record, mode, tokens, where):
    """Tokens per request in a pass: one each when decoding, else `extend_seq_lens`."""
    if mode == DECODE:
        return [1] * tokens
    lengths = record.get("extend_seq_lens")
    if (not isinstance(lengths, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in lengths)
            or sum(lengths) != tokens):
        raise TraceError(f"{where}: field 'extend_seq_lens': {lengths} does not cover its {tokens} tokens")
    return lengths


def _records(loaded, rank):
    """(path, where, physical map, record) of every pass of `rank` that computed tokens, its fields checked."""
    torch = _torch()
    for path, data in loaded:
        mapping = data.get("last_physical_to_logical_map")
        if mapping is not None:
            _id_tensor(mapping, path, "last_physical_to_logical_map", 2)
        for n, record in enumerate(data["records"]):
            where = f"{path}: records[{n}]"
            if not isinstance(record, dict) or _rank(record, where) != rank:
                continue
            for key in ("forward_mode", "positions", "topk_ids_of_layer"):
                if key not in record:
                    raise TraceError(f"{where}: field '{key}' missing")
            mode = record["forward_mode"]
            if not isinstance(mode, int) or isinstance(mode, bool):
                raise TraceError(f"{where}: field 'forward_mode': {type(mode).__name__}, not a whole number (1 extend, 2 decode, 3 mixed, 4 idle)")
            if mode == IDLE:
                continue
            if mode not in (EXTEND, DECODE, MIXED):
                raise TraceError(f"{where}: field 'forward_mode': {mode} (speculative or disaggregated passes) is not supported")
            positions = record["positions"]
            if not isinstance(positions, list) or not all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= TOKENS
                                                          for p in positions):
                raise TraceError(f"{where}: field 'positions': not a list of token positions (whole numbers from 0)")
            yield path, where, mapping, record


def _rank(record, where):
    """A record's `rank` (0 when absent), a whole number."""
    rank = record.get("rank", 0)
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
        raise TraceError(f"{where}: field 'rank': {rank!r} is not a rank (a whole number from 0)")
    return rank


def import_dump(paths, experts, model=None, rank=None):
    """A TraceBuilder of every forward pass of one rank's records (the lowest rank present, unless `rank`)."""
    files = dump_files(paths)
    loaded = [(path, _load(path)) for path in files]
    ranks = sorted({_rank(r, f"{path}: records[{n}]") for path, d in loaded for n, r in enumerate(d["records"]) if isinstance(r, dict)})
    chosen = rank if rank is not None else (ranks[0] if ranks else 0)
    if ranks and chosen not in ranks:
        raise TraceError(f"--rank {chosen}: the dumps hold ranks {ranks}")
    requests, top_k, layers = _Requests(), [None], None
    for path, where, mapping, record in _records(loaded, chosen):
        mode, positions, ids = record["forward_mode"], record["positions"], record["topk_ids_of_layer"]
        layers = layers if layers is not None else getattr(ids, "shape", [0])[0]
        per_token = _logical_ids(ids, mapping, layers, where, path)
        if not isinstance(positions, list) or len(positions) != len(per_token):
            raise TraceError(f"{where}: field 'positions': {len(positions) if isinstance(positions, list) else '?'} "
                             f"positions for {len(per_token)} tokens of routing (ragged)")
        requests.start_pass()
        start = 0
        for length in _segment_lengths(record, mode, len(positions), where):
            first = positions[start]
            if positions[start:start + length] != list(range(first, first + length)):
                raise TraceError(f"{where}: field 'positions': not consecutive within a request: {positions[start:start + length]}")
            sequence, decode = requests.place(mode, first, length, f"{where}: token {start}")
            for t in range(start, start + length):
                sequence.rows.append(_cells(per_token[t], f"{where}: token {t}", top_k))
                if decode:
                    sequence.decoding = True
                elif sequence.decoding:
                    raise TraceError(f"{where}: token {t}: a prefill token after its request's decode tokens")
                else:
                    sequence.prefill += 1
            sequence.next_pos = first + length
            start += length
    if not requests.sequences:
        raise TraceError(f"{', '.join(files)}: no forward passes of rank {chosen}")
    if top_k[0] is None:
        raise TraceError(f"{', '.join(files)}: every routed expert id is -1: not a MoE model's routing")
    k = top_k[0]
    built = []
    for s in requests.sequences:
        grid = [[cell if cell else [-1] * k for cell in row] for row in s.rows]
        check_grid(grid, experts, s.where)
        built.append((s.where, s.first_pos, s.prefill, grid))
    return build(built, layers, experts, k, model,
                 f"SGLang expert distribution recorder (per_token), rank {chosen}: " + ", ".join(files))
