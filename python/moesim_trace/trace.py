"""Writes moesim's routing-trace format, version 1 (docs/trace-format.md), checking what moesim checks."""
import gzip
import json
import os
import stat
import tempfile


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
        self.lines = []
        self._last = None  # (seq, pos, phase) of the last token

    def add(self, seq, pos, phase, experts, weights=None, pred=None, where=""):
        """Adds one token; `experts` has one entry per layer, a list of top_k distinct ids or None; `weights` is shaped
        like it; `pred`, when given, has one entry per layer: None or distinct ids predicted for that layer.

        `where` names the input (file and field) for errors."""
        at = f"{where}: " if where else ""
        whole(seq, "seq", 0, TOKENS, where)
        whole(pos, "pos", 0, TOKENS, where)
        if len(self.lines) >= TOKENS or (len(self.lines) + 1) * self.layers * self.top_k > ROUTED_IDS:
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
        self.lines.append(line)
        self._last = (seq, pos, phase)

    def write(self, path):
        """Writes `.jsonl` or `.jsonl.gz` (by the name) through a temporary file renamed into place, so a failed run
        leaves nothing; a device is written directly, a link's file is replaced (`output_target`), missing folders
        are created."""
        if not self.lines:
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
        """The trace's lines into `file`, compressed when `name` ends in .gz."""
        if name.endswith(".gz"):
            f = gzip.open(file, "wt", encoding="utf-8", compresslevel=6)  # 9 costs twice the time for ~3% less
        else:
            f = open(file, "w", encoding="utf-8")
        with f:
            f.write(json.dumps(self.header, separators=(",", ":")) + "\n")
            for line in self.lines:
                f.write(json.dumps(line, separators=(",", ":")) + "\n")
