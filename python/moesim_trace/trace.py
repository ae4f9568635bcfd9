"""Writes moesim's routing-trace format, version 1 (docs/trace-format.md), checking what moesim checks."""
import gzip
import json
import os
import tempfile


class TraceError(ValueError):
    """Bad input: the message names the file and the field."""


class TraceBuilder:
    """Collects token lines for one trace and writes them atomically.

        b = TraceBuilder(layers=2, experts=8, top_k=2, model="tiny", source="test")
        b.add(seq=0, pos=0, phase="prefill", experts=[[1, 2], [3, 4]])
        b.write("out.jsonl.gz")
    """

    def __init__(self, layers, experts, top_k, model=None, source="", notes=""):
        for name, value, low, high in (("layers", layers, 1, 1024), ("experts", experts, 1, 65534), ("top_k", top_k, 1, 1024)):
            if not isinstance(value, int) or not low <= value <= high:
                raise TraceError(f"{name} must be a whole number in {low}..{high}, got {value!r}")
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
        if phase not in ("prefill", "decode"):
            raise TraceError(f"{at}phase must be prefill or decode, got {phase!r}")
        if len(experts) != self.layers:
            raise TraceError(f"{at}{len(experts)} layers, the trace has {self.layers}")
        cells = []
        for layer, ids in enumerate(experts):
            if ids is None:
                cells.append(None)
                continue
            ids = [int(i) for i in ids]
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
            line["weights"] = [None if w is None else [float(x) for x in w] for w in weights]
        if pred is not None:
            if len(pred) != self.layers:
                raise TraceError(f"{at}pred: {len(pred)} layers, the trace has {self.layers}")
            for layer, ids in enumerate(pred):
                if ids is not None and (len(set(ids)) != len(ids) or any(not 0 <= i < self.experts for i in ids)):
                    raise TraceError(f"{at}pred: layer {layer}: ids {list(ids)} repeat or are out of range 0..<{self.experts}")
            line["pred"] = [None if ids is None else [int(i) for i in ids] for ids in pred]
        self.lines.append(line)
        self._last = (seq, pos, phase)

    def write(self, path):
        """Writes `.jsonl` or `.jsonl.gz` (by the name) through a temporary file, so a failed run leaves nothing."""
        if not self.lines:
            raise TraceError(f"{path}: no tokens to write")
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".moesim-trace-")
        os.close(fd)
        try:
            if path.endswith(".gz"):
                f = gzip.open(tmp, "wt", encoding="utf-8", compresslevel=6)  # 9 costs twice the time for ~3% less
            else:
                f = open(tmp, "w", encoding="utf-8")
            with f:
                f.write(json.dumps(self.header, separators=(",", ":")) + "\n")
                for line in self.lines:
                    f.write(json.dumps(line, separators=(",", ":")) + "\n")
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private; the trace gets the usual permissions
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
