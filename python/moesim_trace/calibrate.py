"""`moesim-trace calibrate-gpu`: measures this machine's GPU with torch and writes a moesim hardware profile (and,
with `--runtime-out`, a runtime profile), in the terms moesim's cost model uses (docs/profiles.md):

- link: host-to-GPU copies of a small (4 KiB) and a large buffer, from pinned and from pageable memory; the line
  through the two pinned points gives `link_latency_s` and `link_bytes_per_s`, the pageable rate over the pinned one
  `pageable_link_fraction`;
- `hbm_bytes_per_s`: a device-to-device copy (bytes read plus written over its time); `gpu_flops`: a large square
  matmul (fp16 on a GPU, fp32 on the CPU); `kernel_launch_s`: a one-element add; `gpu_memory_bytes`: the device's;
- per token count, an expert's SwiGLU FFN at the model's shapes; `expert_overhead_s` is what one token's FFN takes
  beyond moesim's roofline for it (max(2·params/gpu_flops, bytes/hbm) plus one launch). With `--weight-bits 2|4|8`
  the expert's weights are stored as HQQ lays them out (unsigned codes packed into bytes, a scale and zero per group
  of `--group-size` weights, W = (code − zero) · scale) and dequantised then multiplied in eager PyTorch, HQQ's
  PyTorch backend's order; the roofline then reads the packed bytes and the scales and zeros, so the overhead is
  what dequantising costs beyond reading them (a fused kernel, like mixtral-offloading's Triton ones, is not this);
- `layer_overhead_s`: a MoE block as transformers runs it (router, softmax, top-k, renormalise, a loop over the
  chosen experts) at one token, beyond its top-k experts' FFN time.

Every figure is the median of `--repeats` timed runs after one warm-up. `--device cpu` takes the same measurements on
the CPU (copies between two host buffers); the tests use it.
"""
import os
import statistics
import time

from .trace import TraceError


def _torch():
    try:
        import torch
    except ImportError:
        raise TraceError("calibrate-gpu needs torch: pip install torch") from None
    return torch


def fit_link(small_bytes, small_s, large_bytes, large_s):
    """(latency_s, bytes_per_s) of the line t = latency + bytes / rate through two timed copies."""
    if large_bytes <= small_bytes or large_s <= small_s:
        raise TraceError(f"copy timings do not grow with size ({small_bytes} B in {small_s:.3g} s, "
                         f"{large_bytes} B in {large_s:.3g} s): rerun with a larger --copy-mib")
    rate = (large_bytes - small_bytes) / (large_s - small_s)
    return max(0.0, small_s - small_bytes / rate), rate


def quantise(w, bits, group):
    """(packed codes, scale, zero) of `w` [out, in], group-wise along `in`: codes in 0…2^bits−1 packed into uint8
    (8 / bits to a byte, the first in the high bits), W ≈ (code − zero) · scale."""
    torch = _torch()
    levels = (1 << bits) - 1
    g = w.reshape(-1, group).float()
    low, high = g.min(dim=1, keepdim=True).values, g.max(dim=1, keepdim=True).values
    scale = ((high - low) / levels).clamp(min=1e-8)
    zero = -low / scale
    codes = (g / scale + zero).round().clamp(0, levels).to(torch.uint8).reshape(-1, 8 // bits)
    packed = torch.zeros(codes.shape[0], dtype=torch.uint8, device=w.device)
    for i in range(8 // bits):
        packed |= codes[:, i] << (8 - bits * (i + 1))
    return packed, scale.to(w.dtype), zero.to(w.dtype)


def dequantise(packed, scale, zero, bits, shape):
    """The weights `quantise` packed, as HQQ's PyTorch path rebuilds them: unpack, subtract the zero, scale."""
    torch = _torch()
    mask = (1 << bits) - 1
    codes = torch.stack([(packed >> (8 - bits * (i + 1))) & mask for i in range(8 // bits)], dim=1)
    return ((codes.reshape(scale.shape[0], -1).to(scale.dtype) - zero) * scale).reshape(shape)


def roofline_seconds(tokens, params, bytes_, flops, hbm, launch):
    """moesim's time for one expert on `tokens` tokens (CostModel): max(compute, weight reads) plus a launch."""
    return max(2 * tokens * params / flops, bytes_ / hbm) + launch


class Timer:
    """Median wall time of a callable on one device, synchronising a GPU around each run."""

    def __init__(self, device, repeats):
        self.torch = _torch()
        self.device, self.repeats = device, repeats

    def sync(self):
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def median(self, run):
        run()
        self.sync()
        times = []
        for _ in range(self.repeats):
            start = time.perf_counter()
            run()
            self.sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times)


def measure(device="cuda", hidden=4096, ffn=14336, experts=8, top_k=2, tokens=(1, 2, 4, 8, 16, 32, 64, 128),
            copy_mib=256, repeats=10, weight_bits=16, group_size=64, progress=print):
    """Every figure above, as a dict."""
    torch = _torch()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TraceError(f"no CUDA GPU visible to torch {torch.__version__} (its build: "
                         f"{'CPU only' if torch.version.cuda is None else 'CUDA ' + torch.version.cuda}); "
                         "--device cpu takes the same measurements on the CPU")
    if not 1 <= top_k <= experts:
        raise TraceError(f"--top-k {top_k}: must be between 1 and --experts ({experts})")
    if min(tokens) < 1 or hidden < 1 or ffn < 1 or copy_mib < 1 or repeats < 1:
        raise TraceError("--tokens, --hidden, --ffn, --copy-mib and --repeats must be at least 1")
    if weight_bits not in (2, 4, 8, 16):
        raise TraceError(f"--weight-bits {weight_bits}: must be 2, 4, 8 or 16")
    if weight_bits < 16 and (group_size < 1 or group_size % (8 // weight_bits) or hidden % group_size or ffn % group_size):
        raise TraceError(f"--group-size {group_size}: must divide --hidden ({hidden}) and --ffn ({ffn}) and be a "
                         f"multiple of {8 // weight_bits} (codes to a byte at {weight_bits} bits)")
    timer = Timer(device, repeats)
    gpu = device.startswith("cuda")
    dtype = torch.float16 if gpu else torch.float32
    figures = {"device": torch.cuda.get_device_name(device) if gpu else "CPU", "dtype": str(dtype).replace("torch.", "")}

    small, large = 4096, copy_mib << 20
    progress(f"link: copies of {small} B and {copy_mib} MiB, pinned and pageable")
    for kind in ("pinned", "pageable"):
        timings = []
        for size in (small, large):
            src = torch.empty(size, dtype=torch.uint8)
            if kind == "pinned" and gpu:
                src = src.pin_memory()
            dst = torch.empty(size, dtype=torch.uint8, device=device)
            timings.append(timer.median(lambda: dst.copy_(src, non_blocking=kind == "pinned")))
        figures[f"{kind}_latency_s"], figures[f"{kind}_bytes_per_s"] = fit_link(small, timings[0], large, timings[1])

    progress("HBM: a device-to-device copy; FLOP/s: a square matmul; launch: a one-element add")
    a = torch.empty(large // 2, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    figures["hbm_bytes_per_s"] = 2 * a.numel() / timer.median(lambda: b.copy_(a))
    n = 8192 if gpu else 1024
    x = torch.randn(n, n, dtype=dtype, device=device)
    figures["gpu_flops"] = 2 * n ** 3 / timer.median(lambda: x @ x)
    one = torch.zeros(1, device=device)
    figures["kernel_launch_s"] = timer.median(lambda: one.add_(1))
    if gpu:
        figures["gpu_memory_bytes"] = torch.cuda.get_device_properties(device).total_memory
    else:
        figures["gpu_memory_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

    stored = f"{weight_bits}-bit, groups of {group_size}" if weight_bits < 16 else figures["dtype"]
    progress(f"expert FFN {hidden}x{ffn} ({stored}) at {', '.join(map(str, tokens))} tokens")
    w1, w3 = (torch.randn(ffn, hidden, dtype=dtype, device=device) * 0.02 for _ in range(2))
    w2 = torch.randn(hidden, ffn, dtype=dtype, device=device) * 0.02
    figures["weight_bits"], figures["group_size"] = weight_bits, group_size
    if weight_bits < 16:
        q1, q3, q2 = (quantise(w, weight_bits, group_size) for w in (w1, w3, w2))

        def weights():
            return (dequantise(*q1, weight_bits, w1.shape), dequantise(*q3, weight_bits, w3.shape),
                    dequantise(*q2, weight_bits, w2.shape))
    else:
        def weights():
            return w1, w3, w2

    def expert(h):
        a, c, b = weights()
        return (torch.nn.functional.silu(h @ a.T) * (h @ c.T)) @ b.T

    figures["ffn_s"] = {}
    for count in tokens:
        h = torch.randn(count, hidden, dtype=dtype, device=device)
        figures["ffn_s"][count] = timer.median(lambda: expert(h))
    params = 3 * hidden * ffn
    element = torch.empty(0, dtype=dtype).element_size()
    # What moesim's roofline reads: the weights as stored (with a scale and a zero per group when quantised).
    stored_bytes = params * element if weight_bits == 16 else params * weight_bits / 8 + 2 * (params // group_size) * element
    figures["expert_bytes"] = stored_bytes
    one_token = figures["ffn_s"].get(1) or timer.median(lambda: expert(torch.randn(1, hidden, dtype=dtype, device=device)))
    figures["ffn_1_s"] = one_token
    figures["expert_overhead_s"] = max(0.0, one_token - roofline_seconds(1, params, stored_bytes, figures["gpu_flops"],
                                                                         figures["hbm_bytes_per_s"], figures["kernel_launch_s"]))

    progress(f"MoE block: router over {experts} experts, top-{top_k}, at one token")
    gate = torch.randn(experts, hidden, dtype=dtype, device=device) * 0.02
    token = torch.randn(1, hidden, dtype=dtype, device=device)

    def block():
        probs = torch.softmax((token @ gate.T).float(), dim=-1)
        weights, chosen = torch.topk(probs, top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(token)
        for slot, _ in enumerate(chosen[0].tolist()):  # transformers' loop; one expert's weights stand for each
            out += weights[0, slot].to(dtype) * expert(token)
        return out

    figures["block_s"] = timer.median(block)
    figures["layer_overhead_s"] = max(0.0, figures["block_s"] - top_k * one_token)
    return figures


def hardware_yaml(f, base, name):
    lines = [f"# Written by `moesim-trace calibrate-gpu` on {f['device']} ({f['dtype']}); medians of timed runs.",
             f"# link pinned: {f['pinned_bytes_per_s'] / 1e9:.3f} GB/s + {f['pinned_latency_s'] * 1e6:.1f} us; "
             f"pageable: {f['pageable_bytes_per_s'] / 1e9:.3f} GB/s + {f['pageable_latency_s'] * 1e6:.1f} us",
             "# expert FFN:  tokens  seconds"]
    lines += [f"#   {count:6d}  {seconds:.6g}" for count, seconds in sorted(f["ffn_s"].items())]
    lines += [f"# MoE block at one token: {f['block_s']:.6g} s", f"preset: {base}", f"name: {name}",
              f"gpu_memory_bytes: {int(f['gpu_memory_bytes'])}", f"hbm_bytes_per_s: {f['hbm_bytes_per_s']:.6g}",
              f"gpu_flops: {f['gpu_flops']:.6g}", f"link_bytes_per_s: {f['pinned_bytes_per_s']:.6g}",
              f"link_latency_s: {f['pinned_latency_s']:.6g}", f"kernel_launch_s: {f['kernel_launch_s']:.6g}",
              f"source: \"measured by moesim-trace calibrate-gpu on {f['device']}; copy engines and host side from preset {base}\""]
    return "\n".join(lines) + "\n"


def runtime_yaml(f, name):
    fraction = min(1.0, f["pageable_bytes_per_s"] / f["pinned_bytes_per_s"])
    stored = (f"weights at {f['weight_bits']} bits in groups of {f['group_size']}, dequantised then multiplied"
              if f["weight_bits"] < 16 else f"weights in {f['dtype']}")
    lines = [f"# Written by `moesim-trace calibrate-gpu` on {f['device']}: one token's expert FFN ({stored}) took {f['ffn_1_s']:.6g} s,",
             f"# a MoE block at one token {f['block_s']:.6g} s; the overheads are what they take beyond moesim's model.",
             "preset: ideal", f"name: {name}-runtime",
             f"expert_overhead_s: {f['expert_overhead_s']:.6g}", f"layer_overhead_s: {f['layer_overhead_s']:.6g}",
             f"pageable_link_fraction: {max(fraction, 1e-6):.6g}",
             f"source: \"measured by moesim-trace calibrate-gpu on {f['device']} (PyTorch eager)\""]
    return "\n".join(lines) + "\n"


def write_atomically(path, text):
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)


def main(args):
    import sys
    figures = measure(args.device, args.hidden, args.ffn, args.experts, args.top_k, tuple(args.tokens), args.copy_mib,
                      args.repeats, args.weight_bits, args.group_size, progress=lambda line: print(line, file=sys.stderr))
    base = "a100-80gb-pcie"
    write_atomically(args.out, hardware_yaml(figures, base, args.name))
    print(f"wrote {args.out}: link {figures['pinned_bytes_per_s'] / 1e9:.2f} GB/s pinned, "
          f"{figures['pageable_bytes_per_s'] / 1e9:.2f} GB/s pageable; HBM {figures['hbm_bytes_per_s'] / 1e9:.1f} GB/s; "
          f"{figures['gpu_flops'] / 1e12:.2f} TFLOP/s")
    if args.runtime_out:
        write_atomically(args.runtime_out, runtime_yaml(figures, args.name))
        print(f"wrote {args.runtime_out}: expert +{figures['expert_overhead_s'] * 1e6:.1f} us, "
              f"layer +{figures['layer_overhead_s'] * 1e6:.1f} us")
    return 0
