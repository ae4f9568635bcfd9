"""`moesim-trace record`: runs a Hugging Face transformers MoE model with `generate` and records, per token and MoE
layer, the experts its router chose and their weights, plus Fate's cross-layer prediction (arXiv 2502.12224): layer
l+1's gate applied to layer l's gate input, written to `pred` for layer l+1.

Works with the families whose decoder layers hold a sparse block with a `gate` router (`layer.mlp.gate`, or
`layer.block_sparse_moe.gate` in older Mixtral code): Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE. Recent transformers'
routers return (logits, weights, ids) and those are recorded as the model computed them; an older router that
returns logits only is routed here by the family's rule (`route`). Needs torch and transformers.
"""
import json
import os
import sys
import tempfile

from .trace import TraceBuilder, TraceError

# Whether a family renormalises its top-k weights to sum to 1: Mixtral always; the others as config.norm_topk_prob.
_ALWAYS_NORMALISED = {"mixtral"}


def _torch():
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        raise TraceError("record needs torch and transformers: pip install torch transformers") from None
    return torch, F


def normalises(config):
    """Whether the model's routing rule renormalises the top-k weights."""
    return config.model_type in _ALWAYS_NORMALISED or bool(getattr(config, "norm_topk_prob", False))


def route(logits, top_k, normalise):
    """The routing rule of these families: softmax over the experts in float32, the top-k, optionally renormalised."""
    torch, _ = _torch()
    probs = torch.softmax(logits.float(), dim=-1)
    weights, ids = torch.topk(probs, top_k, dim=-1)
    if normalise:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return ids, weights


def moe_gates(model):
    """[(decoder layer index, gate module)] for the layers with routed experts; a TraceError when there are none."""
    inner = getattr(model, "model", model)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise TraceError(f"model {type(model).__name__}: no decoder layers (model.model.layers) found")
    gates = []
    for index, layer in enumerate(layers):
        block = getattr(layer, "mlp", None) or getattr(layer, "block_sparse_moe", None)
        gate = getattr(block, "gate", None)
        weight = getattr(gate, "weight", None)
        if gate is not None and weight is not None and weight.dim() == 2:
            gates.append((index, gate))
    if not gates:
        raise TraceError(f"model {type(model).__name__} ({getattr(model.config, 'model_type', '?')}): no layer has a "
                         "router ('gate' in its MLP block): not a MoE model")
    return gates


def gate_logits(gate, x):
    """What `gate` computes from rows `x` before the softmax: x · Wᵀ (+ bias)."""
    _, F = _torch()
    return F.linear(x.to(gate.weight.dtype), gate.weight, getattr(gate, "bias", None))


class GateRecorder:
    """Forward hooks on every MoE gate; collects, per forward pass, each MoE layer's routed ids, weights and the
    prediction for the next MoE layer made from this layer's gate input."""

    def __init__(self, model, pred_width):
        self.gates = moe_gates(model)
        config = model.config
        self.top_k = int(config.num_experts_per_tok)
        self.experts = int(self.gates[0][1].weight.shape[0])
        self.normalise = normalises(config)
        self.pred_width = pred_width
        if not self.top_k <= pred_width <= self.experts:
            raise TraceError(f"--pred-width {pred_width}: must be between top_k ({self.top_k}) and the experts ({self.experts})")
        self.passes = []  # per forward pass: {moe layer position: (ids rows, weight rows, pred rows for the next)}
        self._handles = []

    def __enter__(self):
        for position, (_, gate) in enumerate(self.gates):
            self._handles.append(gate.register_forward_hook(self._hook(position)))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, position):
        torch, _ = _torch()

        def hook(gate, inputs, output):
            x = inputs[0].reshape(-1, gate.weight.shape[1])
            with torch.no_grad():
                if isinstance(output, tuple) and len(output) == 3:
                    _, weights, ids = output  # the router's own (logits, weights, ids)
                else:
                    ids, weights = route(output.reshape(-1, self.experts), self.top_k, self.normalise)
                pred = None
                if position + 1 < len(self.gates):
                    following = gate_logits(self.gates[position + 1][1], x)
                    pred = torch.topk(following.float(), self.pred_width, dim=-1).indices.tolist()
            if position == 0:
                self.passes.append({})
            self.passes[-1][position] = (ids.tolist(), weights.float().tolist(), pred)

        return hook


def record_tokens(model, prompts, max_new_tokens, pred_width=None, model_name=None, source="", progress=None):
    """A TraceBuilder: one sequence per prompt (a list of token ids), its prompt the prefill and each generated token
    a decode token; `pred` of MoE layer l+1 holds the `pred_width` experts (default top_k) layer l+1's gate ranks
    highest on layer l's gate input, best first; layer 0 has none."""
    torch, _ = _torch()
    config = model.config
    top_k = int(config.num_experts_per_tok)
    width = pred_width or top_k
    model.eval()
    with GateRecorder(model, width) as recorder:
        layers = len(recorder.gates)
        builder = TraceBuilder(layers=layers, experts=recorder.experts, top_k=top_k, model=model_name, source=source,
                               notes=f"pred: layer l+1's gate on layer l's gate input, its top {width} experts (Fate); "
                                     f"weights {'renormalised over the top-k' if recorder.normalise else 'softmax probabilities (not renormalised)'}")
        for seq, ids in enumerate(prompts):
            recorder.passes.clear()
            with torch.no_grad():
                model.generate(torch.tensor([ids], device=model.device), max_new_tokens=max_new_tokens, do_sample=False,
                               pad_token_id=getattr(config, "pad_token_id", None) or 0)
            pos = 0
            for n, forward in enumerate(recorder.passes):
                if len(forward) != layers:
                    raise TraceError(f"prompt {seq}: forward pass {n} ran {len(forward)} of {layers} MoE layers")
                rows = len(forward[0][0])
                for r in range(rows):
                    experts = [forward[l][0][r] for l in range(layers)]
                    weights = [forward[l][1][r] for l in range(layers)]
                    pred = [None] + [forward[l][2][r] for l in range(layers - 1)]
                    builder.add(seq=seq, pos=pos, phase="prefill" if n == 0 else "decode", experts=experts,
                                weights=weights, pred=pred, where=f"prompt {seq}: token {pos}")
                    pos += 1
            if progress:
                progress(f"prompt {seq + 1}/{len(prompts)}: {len(ids)} prompt tokens, {pos - len(ids)} decode tokens recorded")
    return builder


def read_prompts(path, tokenizer):
    """Token id lists from a prompts file: JSON Lines with `input_ids` (a list of ids) or `prompt`/`text`, or plain
    text with one prompt per line. Text needs the model's tokenizer."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise TraceError(f"{path}: cannot read: {e}") from None
    prompts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        item = line
        if line.lstrip().startswith("{"):
            try:
                data = json.loads(line)
            except json.JSONDecodeError as e:
                raise TraceError(f"{where}: not JSON ({e.msg})") from None
            if "input_ids" in data:
                ids = data["input_ids"]
                if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
                    raise TraceError(f"{where}: field 'input_ids': a non-empty list of token ids expected")
                prompts.append(ids)
                continue
            item = data.get("prompt", data.get("text"))
            if not isinstance(item, str):
                raise TraceError(f"{where}: field 'prompt': a string expected (or 'text', or 'input_ids')")
        if tokenizer is None:
            raise TraceError(f"{where}: a text prompt, but the model has no tokenizer: give 'input_ids' lines")
        ids = tokenizer(item)["input_ids"]
        if not ids:
            raise TraceError(f"{where}: the prompt tokenises to nothing")
        prompts.append(list(ids))
    if not prompts:
        raise TraceError(f"{path}: no prompts")
    return prompts


DTYPES = ("float32", "bfloat16", "float16")


def load(model_path, device="cpu", dtype="float32"):
    """(model, tokenizer or None) from a local directory or a Hub name, on `device` in `dtype`."""
    torch, _ = _torch()
    if dtype not in DTYPES:
        raise TraceError(f"--dtype {dtype!r}: one of {', '.join(DTYPES)}")
    try:
        target = torch.device(device)
    except RuntimeError:
        raise TraceError(f"--device {device!r}: not a torch device (cpu, cuda, cuda:1, …)") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise TraceError(f"--device {device}: no CUDA GPU visible to torch {torch.__version__}")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise TraceError("record needs transformers: pip install transformers") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype)).to(target)
    except (OSError, ValueError) as e:
        raise TraceError(f"--model {model_path}: cannot load: {e}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError, TypeError):
        tokenizer = None
    return model, tokenizer


def check_vocabulary(prompts, model, path):
    vocab = int(model.config.vocab_size)
    for n, ids in enumerate(prompts):
        bad = [i for i in ids if i >= vocab]
        if bad:
            raise TraceError(f"{path}: prompt {n}: token id {bad[0]} out of the model's vocabulary 0..<{vocab}")


_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "float64": 8}


def model_profile(model, name, source):
    """moesim's model profile of `model` (docs/profiles.md's fields), counted from its modules: per MoE layer the
    routed experts' and shared experts' parameters (each a SwiGLU of three matrices: gate, up, down), and the rest of
    the layer (attention, router, norms) as its non-expert parameters; the attention shape and the weights' type
    from its config. `preset` is only the base a profile file needs: every field is set."""
    gates = moe_gates(model)
    inner = getattr(model, "model", model)
    config = model.config
    hidden = config.hidden_size
    experts = gates[0][1].weight.shape[0]
    expert_params, shared_params, rest = [], [], []
    for index, _ in gates:
        layer = inner.layers[index]
        block = getattr(layer, "mlp", None) or getattr(layer, "block_sparse_moe", None)
        routed = sum(p.numel() for p in block.experts.parameters())
        shared_module = getattr(block, "shared_expert", None) or getattr(block, "shared_experts", None)
        shared = sum(p.numel() for p in shared_module.parameters()) if shared_module is not None else 0
        expert_params.append(routed // experts)
        shared_params.append(shared)
        rest.append(sum(p.numel() for p in layer.parameters()) - routed - shared)
    per_expert = expert_params[0]
    if any(e != per_expert for e in expert_params) or per_expert % (3 * hidden):
        raise TraceError(f"{name}: experts of {per_expert} parameters are not three {hidden}-wide matrices in every "
                         "MoE layer: write the model profile by hand (docs/profiles.md)")
    heads = config.num_attention_heads
    stored = config.to_dict()  # the weights' type as published (`dtype`; `torch_dtype` in older configs)
    dtype = str(stored.get("dtype") or stored.get("torch_dtype") or "bfloat16").replace("torch.", "")
    fields = {
        "name": name, "layers": len(gates), "experts": experts, "top_k": config.num_experts_per_tok, "hidden": hidden,
        "expert_ffn": per_expert // (3 * hidden), "matrices": 3,
        "shared_experts": 1 if shared_params[0] else 0, "shared_expert_ffn": shared_params[0] // (3 * hidden),
        "non_expert_params_per_layer": round(sum(rest) / len(rest)), "bytes_per_param": _BYTES.get(dtype, 2),
        "attention_heads": heads, "kv_heads": getattr(config, "num_key_value_heads", None) or heads,
        "head_dim": getattr(config, "head_dim", None) or hidden // heads, "source": source,
    }
    lines = [f"# moesim model profile of {name}, written by moesim-trace record (counted from the model's modules)",
             "preset: mixtral-8x7b  # the base a profile file names; every field below is this model's"]
    lines += [f"{key}: {json.dumps(value) if isinstance(value, str) else value}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def profile_path(trace_path):
    """Where the profile goes: beside the trace, `T.model.yaml` for `T.jsonl.gz`, `T.jsonl` or `T.moet` (where
    moesim replay and plan look when no preset fits the trace)."""
    folder, base = os.path.split(trace_path)
    for suffix in (".gz", ".jsonl", ".moet"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return os.path.join(folder, base + ".model.yaml")


def write_profile(text, trace_path):
    """Writes the profile beside the trace through a temporary file renamed into place."""
    path = profile_path(trace_path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".moesim-trace-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as e:  # a line naming the file, not a traceback (the trace itself is written)
        raise TraceError(f"{path}: cannot write the model profile: {e.strerror or e}") from None
    return path


def record(model_path, prompts_path, max_new_tokens, out, pred_width=None, model_name=None, device="cpu", dtype="float32",
           progress=None):
    """The `record` command: loads, records and writes `out`; returns the builder."""
    if max_new_tokens < 1:
        raise TraceError(f"--max-new-tokens {max_new_tokens}: must be at least 1")
    model, tokenizer = load(model_path, device, dtype)
    moe_gates(model)  # refuse a dense model before tokenising anything
    prompts = read_prompts(prompts_path, tokenizer)
    check_vocabulary(prompts, model, prompts_path)
    import transformers
    name = model_name or os.path.basename(os.path.normpath(model_path))
    builder = record_tokens(model, prompts, max_new_tokens, pred_width, name,
                            source=f"moesim-trace record: {model_path} ({model.config.model_type}), prompts {prompts_path}, "
                                   f"greedy, max_new_tokens {max_new_tokens}, {dtype} on {device}, transformers {transformers.__version__}",
                            progress=progress)
    try:
        profile = model_profile(model, name, f"{model_path} (moesim-trace record)")
    except TraceError as e:  # the trace stands without it: say why, write it
        profile = None
        print(f"moesim-trace: note: no model profile written: {e}", file=sys.stderr)
    builder.write(out)
    if profile and os.path.isfile(out):  # a trace written to a device has nothing beside it
        try:
            builder.profile_path = write_profile(profile, out)
        except TraceError as e:  # the trace stands without it
            print(f"moesim-trace: note: {e}", file=sys.stderr)
    return builder
