"""Writes moesim's routing-trace format, version 1 (docs/trace-format.md), checking what moesim checks."""
import json
import os
import queue
import stat
import tempfile
import threading
import zlib

import numpy as np


class TraceError(ValueError):
    """Bad input: the message names the file and the field."""


# moesim's trace limits (docs/trace-format.md, Limits): every importer bounds what it allocates by them.
LAYERS, EXPERTS, TOP_K = (1, 1024), (1, 65534), (1, 1024)
TOKENS = ROUTED_IDS = 2**31 - 1


def whole(value, name, low, high, where=""):
    """`value` if it is a whole number (not a bool) in low..high, else a TraceError naming `name`."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise TraceError(f"{where + ': ' if where else ''}{name} must be a whole number in {low}..{high}, got {value!r}")
    return value


def output_target(path):
    """Where a trace written to `path` goes: a character device or FIFO is written directly (None), a link is
    followed to the file it leads to (kept a link, as moesim does), a folder or a link to nothing is refused, and a
    `.moet` name is refused (the binary format is moesim's own: convert with `moesim trace convert`)."""
    if path.endswith(".moet"):
        raise TraceError(f"{path}: --out writes JSON Lines (.jsonl or .jsonl.gz); for .moet, convert with "
                         "`moesim trace convert OUT.jsonl.gz OUT.moet`")
    if os.path.islink(path):
        if not os.path.exists(path):
            raise TraceError(f"{path}: is a link to a file that does not exist: name the file itself")
        path = os.path.realpath(path)
    if os.path.exists(path):
        mode = os.stat(path).st_mode
        if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
            return None
        if stat.S_ISDIR(mode):
            raise TraceError(f"{path}: is a directory; name a file to write")
        if not stat.S_ISREG(mode):
            raise TraceError(f"{path}: is not a regular file, a character device or a FIFO; name a file to write")
    return path


class TraceBuilder:
    """Collects token lines for one trace and writes them atomically.

        b = TraceBuilder(layers=2, experts=8, top_k=2, model="tiny", source="test")
        b.add(seq=0, pos=0, phase="prefill", experts=[[1, 2], [3, 4]])
        b.write("out.jsonl.gz")
    """

    def __init__(self, layers, experts, top_k, model=None, source="", notes=""):
        for name, value, (low, high) in (("layers", layers, LAYERS), ("experts", experts, EXPERTS), ("top_k", top_k, TOP_K)):
            whole(value, name, low, high)
        if top_k > experts:
            raise TraceError(f"top_k ({top_k}) must not exceed experts ({experts})")
        self.layers, self.experts, self.top_k = layers, experts, top_k
        self.header = {"format": "moe-routing-trace", "version": 1, "layers": layers, "experts": experts, "top_k": top_k}
        if model:
            self.header["model"] = model
        if source:
            self.header["source"] = source
        if notes:
            self.header["notes"] = notes
        self._items = []  # token lines (dicts), and blocks of tokens from routing arrays (`add_block`)
        self._tokens = 0
        self._sequences = set()
        self._last = None  # (seq, pos, phase) of the last token

    @property
    def tokens(self):
        return self._tokens

    @property
    def sequences(self):
        return len(self._sequences)

    @property
    def lines(self):
        """Every token as the dict its JSON line holds (built on demand for blocks)."""
        out = []
        for item in self._items:
            if isinstance(item, _Block):
                out.extend(json.loads(line) for chunk in item.texts() for line in chunk.splitlines())
            else:
                out.append(item)
        return out

    def add(self, seq, pos, phase, experts, weights=None, pred=None, where=""):
        """Adds one token; `experts` has one entry per layer, a list of top_k distinct ids or None; `weights` is shaped
        like it; `pred`, when given, has one entry per layer: None or distinct ids predicted for that layer.

        `where` names the input (file and field) for errors."""
        at = f"{where}: " if where else ""
        whole(seq, "seq", 0, TOKENS, where)
        whole(pos, "pos", 0, TOKENS, where)
        if self._tokens >= TOKENS or (self._tokens + 1) * self.layers * self.top_k > ROUTED_IDS:
            raise TraceError(f"{at}more tokens than a moesim trace holds ({ROUTED_IDS} routed ids)")
        if phase not in ("prefill", "decode"):
            raise TraceError(f"{at}phase must be prefill or decode, got {phase!r}")
        if len(experts) != self.layers:
            raise TraceError(f"{at}{len(experts)} layers, the trace has {self.layers}")
        cells = []
        for layer, ids in enumerate(experts):
            if ids is None:
                cells.append(None)
                continue
            ids = list(ids)
            for i in ids:
                if not isinstance(i, int) or isinstance(i, bool):
                    raise TraceError(f"{at}layer {layer}: {i!r} is not an expert id (a whole number)")
            if len(ids) != self.top_k:
                raise TraceError(f"{at}layer {layer}: {len(ids)} ids, top_k is {self.top_k}")
            if len(set(ids)) != len(ids):
                raise TraceError(f"{at}layer {layer}: duplicate expert ids {ids}")
            for i in ids:
                if not 0 <= i < self.experts:
                    raise TraceError(f"{at}layer {layer}: expert id {i} out of range 0..<{self.experts}")
            cells.append(ids)
        if self._last is not None and self._last[0] == seq:
            if pos <= self._last[1]:
                raise TraceError(f"{at}pos {pos} does not increase within sequence {seq}")
            if self._last[2] == "decode" and phase == "prefill":
                raise TraceError(f"{at}a prefill token after decode tokens in sequence {seq}")
        line = {"seq": seq, "pos": pos, "phase": phase, "experts": cells}
        if weights is not None:
            if len(weights) != self.layers:
                raise TraceError(f"{at}weights: {len(weights)} layers, the trace has {self.layers}")
            for layer, (w, ids) in enumerate(zip(weights, cells)):
                if (w is None) != (ids is None) or (w is not None and len(w) != self.top_k):
                    raise TraceError(f"{at}weights: layer {layer}: not shaped like its expert ids")
                if w is not None and any(isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x <= 1e6 for x in w):
                    raise TraceError(f"{at}weights: layer {layer}: {list(w)} are not gate weights in 0 … 1e6")
            line["weights"] = [None if w is None else [float(x) for x in w] for w in weights]
        if pred is not None:
            if len(pred) != self.layers:
                raise TraceError(f"{at}pred: {len(pred)} layers, the trace has {self.layers}")
            for layer, ids in enumerate(pred):
                if ids is not None and (len(set(ids)) != len(ids) or any(isinstance(i, bool) or not isinstance(i, int)
                                                                         or not 0 <= i < self.experts for i in ids)):
                    raise TraceError(f"{at}pred: layer {layer}: ids {list(ids)} repeat or are out of range 0..<{self.experts}")
            line["pred"] = [None if ids is None else [int(i) for i in ids] for ids in pred]
        self._items.append(line)
        self._tokens += 1
        self._sequences.add(seq)
        self._last = (seq, pos, phase)

    def add_block(self, seq, first_pos, prefill, ids, where=""):
        """Adds the tokens of one sequence from an integer array [tokens, layers, top_k]: token t at position
        first_pos + t, the first `prefill` of them prefill; a cell of -1 only is a null cell. The checks of `add`,
        vectorised; errors name the token as `where: token t`."""
        ids = np.asarray(ids)
        if ids.ndim != 3 or ids.shape[1:] != (self.layers, self.top_k):
            raise TraceError(f"{where}: routing shaped {ids.shape}, the trace has {self.layers} layers of top_k {self.top_k}")
        count = ids.shape[0]
        whole(seq, "seq", 0, TOKENS, where)
        whole(first_pos, "pos", 0, TOKENS - max(count - 1, 0), where)
        if not count:
            return
        if self._tokens + count > TOKENS or (self._tokens + count) * self.layers * self.top_k > ROUTED_IDS:
            raise TraceError(f"{where}: more tokens than a moesim trace holds ({ROUTED_IDS} routed ids)")
        for start in range(0, count, _BLOCK_TOKENS):  # in pieces: the scratch arrays stay small
            self._check_ids(ids[start:start + _BLOCK_TOKENS], start, where)
        first_phase = "prefill" if prefill > 0 else "decode"
        if self._last is not None and self._last[0] == seq:
            if first_pos <= self._last[1]:
                raise TraceError(f"{where}: token 0: pos {first_pos} does not increase within sequence {seq}")
            if self._last[2] == "decode" and first_phase == "prefill":
                raise TraceError(f"{where}: token 0: a prefill token after decode tokens in sequence {seq}")
        self._items.append(_Block(seq, first_pos, prefill, ids, len(str(self.experts - 1))))
        self._tokens += count
        self._sequences.add(seq)
        self._last = (seq, first_pos + count - 1, "prefill" if prefill >= count else "decode")

    def _check_ids(self, ids, first, where):
        """`add`'s checks of the ids of tokens first, first + 1, …: whole cells of -1 (null) or distinct ids in range."""
        null = (ids == -1).all(axis=2)
        bad = ((ids < 0) | (ids >= self.experts)).any(axis=2) & ~null
        if bad.any():
            t, layer = (int(n) for n in np.argwhere(bad)[0])
            i = next(int(i) for i in ids[t, layer] if not 0 <= i < self.experts)
            raise TraceError(f"{where}: token {first + t}: layer {layer}: expert id {i} out of range 0..<{self.experts}")
        ordered = np.sort(ids, axis=2)
        repeated = (ordered[:, :, 1:] == ordered[:, :, :-1]).any(axis=2) & ~null
        if repeated.any():
            t, layer = (int(n) for n in np.argwhere(repeated)[0])
            raise TraceError(f"{where}: token {first + t}: layer {layer}: duplicate expert ids {ids[t, layer].tolist()}")

    def write(self, path):
        """Writes `.jsonl` or `.jsonl.gz` (by the name) through a temporary file renamed into place, so a failed run
        leaves nothing; a device is written directly, a link's file is replaced (`output_target`), missing folders
        are created."""
        if not self._tokens:
            raise TraceError(f"{path}: no tokens to write")
        target = output_target(path)
        try:
            if target is None:
                self._write_to(path, path)
                return
            folder = os.path.dirname(os.path.abspath(target))
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".moesim-trace-")
            os.close(fd)
            try:
                self._write_to(tmp, path)
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private; the trace gets the usual permissions
                os.replace(tmp, target)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as e:
            raise TraceError(f"{path}: cannot write: {e.strerror or e}") from None

    def _write_to(self, file, name):
        """The trace's lines into `file`, compressed when `name` ends in .gz (gzip level 3 on a second thread, while
        this one formats the lines; the header carries no name or time, so the same trace gives the same bytes)."""
        with open(file, "wb") as f:
            if name.endswith(".gz"):
                _compress_in_background(self._chunks(), f)
            else:
                for chunk in self._chunks():
                    f.write(chunk)

    def _chunks(self, size=1 << 20):
        """The trace's UTF-8 text in pieces of about `size` bytes."""
        pending, length = [(json.dumps(self.header, separators=(",", ":")) + "\n").encode("utf-8")], 0
        for item in self._items:
            for text in item.texts() if isinstance(item, _Block) else [_line(item)]:
                pending.append(text)
                length += len(text)
                if length >= size:
                    yield b"".join(pending)
                    pending, length = [], 0
        if pending:
            yield b"".join(pending)


def _line(token):
    return (json.dumps(token, separators=(",", ":")) + "\n").encode("utf-8")


_BLOCK_TOKENS = 8192  # tokens checked or formatted at once from a routing array


class _Block:
    """Tokens of one sequence held as a routing array until written (`TraceBuilder.add_block`)."""

    def __init__(self, seq, first_pos, prefill, ids, digits):
        self.seq, self.first_pos, self.prefill, self.ids, self.digits = seq, first_pos, prefill, ids, digits

    def texts(self):
        """The tokens' JSON lines, byte for byte as `json.dumps` writes the dicts `add` keeps, in pieces of up to
        `_BLOCK_TOKENS` lines. Formatted as arrays: each number right-aligned in a fixed-width field with NUL bytes
        before it, each null cell padded with NUL bytes after it, then every NUL byte dropped."""
        for start in range(0, len(self.ids), _BLOCK_TOKENS):
            ids = self.ids[start:start + _BLOCK_TOKENS]
            n, layers, k = ids.shape
            positions = np.arange(self.first_pos + start, self.first_pos + start + n)
            phase = np.where((np.arange(start, start + n) < self.prefill)[:, None], _text("prefill"), _text("decode\0"))
            head = [_repeat(b'{"seq":', n), _repeat(_decimal(np.array([self.seq]), 10)[0].tobytes(), n),
                    _repeat(b',"pos":', n), _decimal(positions, 10), _repeat(b',"phase":"', n), phase,
                    _repeat(b'","experts":[', n)]
            width = max(4, 2 * k + self.digits * k)  # '[' ids and commas ']', or "null"
            cells = np.zeros((n, layers, width + 1), dtype=np.uint8)  # + the comma after the cell
            cells[:, :, 0] = ord("[")
            digits = _decimal(np.maximum(ids, 0), self.digits)
            for slot in range(k):
                at = 1 + slot * (self.digits + 1)
                cells[:, :, at:at + self.digits] = digits[:, :, slot]
                cells[:, :, at + self.digits] = ord(",") if slot < k - 1 else ord("]")
            null = (ids == -1).all(axis=2)
            cells[null, :width] = np.frombuffer(b"null".ljust(width, b"\0"), dtype=np.uint8)
            cells[:, :-1, width] = ord(",")
            rows = np.concatenate(head + [cells.reshape(n, -1), _repeat(b"]}\n", n)], axis=1).ravel()
            yield rows[rows != 0].tobytes()


def _text(s):
    return np.frombuffer(s.encode("ascii"), dtype=np.uint8)


def _repeat(b, n):
    return np.broadcast_to(np.frombuffer(b, dtype=np.uint8), (n, len(b)))


def _decimal(values, width):
    """The decimal digits of non-negative `values` as ASCII in `width` bytes each (shape + (width,)), right-aligned
    with NUL bytes before them."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    v = values.astype(np.int64)[..., None]
    out = (v // powers % 10 + ord("0")).astype(np.uint8)
    leading = v < powers
    leading[..., -1] = False  # 0 is written "0"
    out[leading] = 0
    return out


def _compress_in_background(chunks, f, level=3):
    """Writes `chunks` (bytes) to the binary file `f` as one gzip member, compressed on a second thread (zlib lets go
    of the interpreter's lock while it works). Level 3: on routing text, 9% larger than level 6 and six times as
    fast (docs/performance.md)."""
    todo = queue.Queue(maxsize=4)
    failure = []

    def compress():
        packer = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
        try:
            while (data := todo.get()) is not None:
                f.write(packer.compress(data))
            f.write(packer.flush())
        except BaseException as e:  # handed to the caller's thread below
            failure.append(e)
            while todo.get() is not None:
                pass

    worker = threading.Thread(target=compress, daemon=True)
    worker.start()
    try:
        for chunk in chunks:
            todo.put(chunk)
    finally:
        todo.put(None)
        worker.join()
    if failure:
        raise failure[0]
