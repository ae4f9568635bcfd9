"""Routing stored as Parquet, one file per MoE layer, one row per token, row i of every file the same token: the
layout of FLAME-MoE-Traces (huggingface.co/datasets/CMU-FLAME/FLAME-MoE-Traces: `actives/iter_NNNN/layer_NN.parquet`
with `indices`, list<int16>[6], and `scores`, list<float16>[6], the router's softmax probabilities sorted
descending). Files are ordered by the number in their name. The rows carry no sequence boundaries: `--seq-len`
cuts them into sequences (pretraining captures are fixed-length sequences), each one prefill step, or with
`--phase decode` one step per token. Reading stops after `--max-tokens` rows. Needs pyarrow.
"""
import glob
import os
import re

from .routing import check_grid
from .trace import TOP_K, TraceBuilder, TraceError


def _pyarrow():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TraceError("import parquet needs pyarrow: pip install pyarrow") from None
    return pq


def layer_files(folder, pattern):
    """The folder's files matching `pattern`, ordered by the last number in their names."""
    if not os.path.isdir(folder):
        raise TraceError(f"{folder}: not a directory of per-layer Parquet files")
    files = glob.glob(os.path.join(folder, pattern))
    if not files:
        raise TraceError(f"{folder}: no files match {pattern!r}")

    def number(path):
        found = re.findall(r"\d+", os.path.basename(path))
        if not found:
            raise TraceError(f"{path}: no layer number in the name")
        return int(found[-1])
    return sorted(files, key=number)


def _read(path, ids_column, weights_column, max_tokens):
    """(ids rows, weight rows or None) of the first `max_tokens` rows of one layer file."""
    pq = _pyarrow()
    try:
        handle = pq.ParquetFile(path)
        handle.schema_arrow
    except Exception as e:  # pyarrow raises ArrowInvalid and others for a file of another format
        raise TraceError(f"{path}: not a Parquet file ({type(e).__name__})") from None
    columns = [ids_column] + ([weights_column] if weights_column else [])
    missing = [c for c in columns if c not in handle.schema_arrow.names]
    if missing:
        raise TraceError(f"{path}: field '{missing[0]}' missing (columns: {', '.join(handle.schema_arrow.names)}); "
                         "name the columns with --ids-column and --weights-column")
    import pyarrow as pa
    kinds = [("expert ids", ids_column, pa.types.is_integer)]
    if weights_column:
        kinds.append(("gate weights", weights_column, lambda t: pa.types.is_floating(t) or pa.types.is_integer(t)))
    for what, column, is_kind in kinds:
        field = handle.schema_arrow.field(column)
        listed = field.type
        if not (pa.types.is_list(listed) or pa.types.is_large_list(listed) or pa.types.is_fixed_size_list(listed)) \
                or not is_kind(listed.value_type):
            raise TraceError(f"{path}: field '{column}': {listed}, not a list of {what}"
                             + (" (whole numbers)" if what == "expert ids" else " (numbers)"))
    batches, rows = [], 0
    try:
        for batch in handle.iter_batches(columns=columns, batch_size=65536):
            batches.append(batch)
            rows += batch.num_rows
            if rows >= max_tokens:
                break
        table = pa.Table.from_batches(batches, schema=batches[0].schema) if batches else None
        if table is None or table.num_rows == 0:
            raise TraceError(f"{path}: no rows")
        table = table.slice(0, max_tokens)
        return table.column(ids_column).to_pylist(), (table.column(weights_column).to_pylist() if weights_column else None)
    except (pa.ArrowException, OSError) as e:  # a damaged page or column chunk
        raise TraceError(f"{path}: cannot read its rows ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def import_folder(folder, experts, seq_len, phase="prefill", max_tokens=100000, ids_column="indices",
                  weights_column="scores", pattern="*.parquet", model=None, progress=None):
    """A TraceBuilder of the folder's per-layer files (see the module's note)."""
    if seq_len < 1:
        raise TraceError(f"--seq-len {seq_len}: must be at least 1")
    if max_tokens < 1:
        raise TraceError(f"--max-tokens {max_tokens}: must be at least 1")
    if phase not in ("prefill", "decode"):
        raise TraceError(f"--phase {phase!r}: prefill or decode")
    files = layer_files(folder, pattern)
    layers = []
    for n, path in enumerate(files):
        layers.append(_read(path, ids_column, weights_column, max_tokens))
        if progress:
            progress(f"read {os.path.basename(path)} ({n + 1}/{len(files)} layers): {len(layers[-1][0])} rows")
    rows = len(layers[0][0])
    for path, (ids, _) in zip(files, layers):
        if len(ids) != rows:
            raise TraceError(f"{path}: {len(ids)} rows, {files[0]} has {rows}: layers must hold the same tokens (ragged)")
    top_k = None
    for path, (ids, weights) in zip(files, layers):
        for t, cell in enumerate(ids):
            if cell is None or not isinstance(cell, list):
                raise TraceError(f"{path}: row {t}: field '{ids_column}' is not a list of expert ids")
            top_k = top_k or len(cell)
            if not TOP_K[0] <= top_k <= TOP_K[1]:
                raise TraceError(f"{path}: row {t}: field '{ids_column}' has {len(cell)} ids; top-k is {TOP_K[0]}..{TOP_K[1]}")
            if len(cell) != top_k:
                raise TraceError(f"{path}: row {t}: field '{ids_column}' has {len(cell)} ids, top-k is {top_k} (ragged)")
            if None in cell:
                raise TraceError(f"{path}: row {t}: field '{ids_column}': a null id")
            if weights is not None and (weights[t] is None or len(weights[t]) != top_k or None in weights[t]):
                raise TraceError(f"{path}: row {t}: field '{weights_column}' does not match its {top_k} ids")
        check_grid([[cell] for cell in ids], experts, f"{path}: field '{ids_column}'")
    builder = TraceBuilder(layers=len(files), experts=experts, top_k=top_k, model=model,
                           source=f"Parquet per-layer routing: {folder} ({', '.join(os.path.basename(f) for f in files)})",
                           notes=f"rows cut into sequences of {seq_len} tokens, {phase}")
    for t in range(rows):
        cells = [layer[0][t] for layer in layers]
        weights = [layer[1][t] for layer in layers] if weights_column else None
        if weights is not None and any(w is None or not all(isinstance(x, (int, float)) and 0 <= x <= 1e6 for x in w) for w in weights):
            raise TraceError(f"{folder}: row {t}: field '{weights_column}' holds a value outside 0 … 1e6")
        if any(-1 in c for c in cells):
            raise TraceError(f"{folder}: row {t}: field '{ids_column}': -1 in a token's routing")
        builder.add(seq=t // seq_len, pos=t % seq_len, phase=phase, experts=cells, weights=weights,
                    where=f"{folder}: row {t}")
    return builder
