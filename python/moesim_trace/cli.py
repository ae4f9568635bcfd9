"""`moesim-trace`: routing traces for moesim from the engines people run, a recorder for Hugging Face MoE models,
and a calibration of the user's GPU."""
import argparse
import sys

from . import calibrate, megatron, npy, parquet, record, sglang, sglang_dump, tiny, vllm
from .trace import EXPERTS, TOKENS, TraceError, output_target, whole


def _output(parser, model_help="model name for the header (a moesim preset name lets replay pick it)"):
    parser.add_argument("--model", help=model_help)
    parser.add_argument("--out", required=True, help="output trace, .jsonl or .jsonl.gz (a link is followed; "
                        "missing folders are created)")


def _prompt_tokens(parser):
    parser.add_argument("--prompt-tokens", type=int, nargs="+",
                        help=".npy files: prompt tokens of each request (one count, or one per file): those rows are the prefill")


def _arrays(args, engine):
    """The .npy form of `import vllm|sglang`; None when the files are JSON responses."""
    arrays = [f.endswith(".npy") for f in args.files]
    if not any(arrays):
        return None
    if not all(arrays):
        raise TraceError("give JSON responses or .npy arrays, not both: " + ", ".join(args.files))
    if not args.prompt_tokens:
        raise TraceError("--prompt-tokens: .npy arrays do not say how many of their rows are the prompt")
    return npy.import_arrays(args.files, args.prompt_tokens, args.experts, args.model, engine=f"{engine} routed_experts")


def _parser():
    parser = argparse.ArgumentParser(prog="moesim-trace", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    imports = commands.add_parser("import", help="convert an engine's routing output to a moesim trace")
    sources = imports.add_subparsers(dest="source", required=True)

    p = sources.add_parser("vllm", help="saved vLLM completions responses with choices[].routed_experts, or .npy arrays")
    p.add_argument("files", nargs="+", help="JSON files (one response, or a list of them), or .npy files (one request each)")
    p.add_argument("--experts", type=int, required=True, help="routed experts per layer")
    _prompt_tokens(p)
    _output(p)

    p = sources.add_parser("sglang", help="saved SGLang /generate responses with meta_info.routed_experts, or .npy arrays")
    p.add_argument("files", nargs="+", help="JSON files (one response, or a list of them), or .npy files (one request each)")
    p.add_argument("--layers", type=int, help="JSON: layers in the routed-experts array (the model's decoder layers)")
    p.add_argument("--experts", type=int, required=True, help="routed experts per layer")
    p.add_argument("--top-k", type=int, help="JSON: experts per token (num_experts_per_tok)")
    _prompt_tokens(p)
    _output(p)

    p = sources.add_parser("npy", help="routed experts as .npy arrays [tokens, layers, top_k], one request per file "
                                       "(vLLM's or SGLang's routed_experts, saved with numpy.save)")
    p.add_argument("files", nargs="+", help=".npy files, one per request")
    p.add_argument("--prompt-tokens", type=int, nargs="+", required=True,
                   help="prompt tokens of each request (one count, or one per file): those rows are the prefill")
    p.add_argument("--experts", type=int, required=True, help="routed experts per layer")
    _output(p)

    p = sources.add_parser("sglang-dump", help="SGLang's expert distribution recorder, per_token mode (torch.save files)")
    p.add_argument("paths", nargs="+", help="the dump directory, or expert_distribution_recorder_*.pt files")
    p.add_argument("--experts", type=int, required=True, help="routed (logical) experts per layer")
    p.add_argument("--rank", type=int, help="the rank whose records to read (default the lowest present)")
    _output(p)

    p = sources.add_parser("megatron", help="Megatron-Core's router trace (router_trace_rank*.jsonl)")
    p.add_argument("files", nargs="+", help="router_trace_rank*.jsonl files")
    p.add_argument("--experts", type=int, required=True, help="routed experts per layer (num_moe_experts)")
    p.add_argument("--batch", type=int, default=1, help="requests per step (micro-batch size; default 1)")
    _output(p)

    p = sources.add_parser("parquet", help="per-layer Parquet files with top-k ids and scores (FLAME-MoE-Traces' layout)")
    p.add_argument("folder", help="a folder with one Parquet file per MoE layer (e.g. actives/iter_5473)")
    p.add_argument("--experts", type=int, required=True, help="routed experts per layer")
    p.add_argument("--seq-len", type=int, required=True, help="tokens per sequence (the capture's sequence length)")
    p.add_argument("--phase", default="prefill", choices=["prefill", "decode"],
                   help="prefill: each sequence one step (default); decode: every token its own step")
    p.add_argument("--max-tokens", type=int, default=100000, help="rows read from each file (default 100000)")
    p.add_argument("--ids-column", default="indices", help="column of top-k expert ids (default indices)")
    p.add_argument("--weights-column", default="scores", help="column of their gate weights (default scores; '' for none)")
    p.add_argument("--pattern", default="*.parquet", help="layer files in the folder (default *.parquet)")
    _output(p)

    p = commands.add_parser("record", help="run a Hugging Face MoE model with generate and record its routing and "
                                           "Fate's cross-layer predictions (needs torch and transformers)")
    p.add_argument("--model", required=True, help="a local model directory or a Hub name (Mixtral, Qwen2/Qwen3-MoE, OLMoE)")
    p.add_argument("--prompts", required=True, help="prompts: text, one per line, or JSON Lines with 'prompt' or 'input_ids'")
    p.add_argument("--max-new-tokens", type=int, default=32, help="tokens generated per prompt, greedy (default 32)")
    p.add_argument("--pred-width", type=int, help="experts recorded per cross-layer prediction, best first (default top_k)")
    p.add_argument("--device", default="cpu", help="torch device to run on: cpu (default), cuda, cuda:1, …")
    p.add_argument("--dtype", default="float32", choices=record.DTYPES, help="weights' type (default float32)")
    p.add_argument("--name", help="model name for the header (default the directory's name)")
    p.add_argument("--out", required=True, help="output trace, .jsonl or .jsonl.gz")

    p = commands.add_parser("tiny-model", help="write a small random MoE model and a byte tokenizer, to try record")
    p.add_argument("--family", default="mixtral", choices=tiny.FAMILIES, help="model family (default mixtral)")
    p.add_argument("--layers", type=int, default=4, help="decoder layers (default 4)")
    p.add_argument("--experts", type=int, default=8, help="routed experts per layer (default 8)")
    p.add_argument("--top-k", type=int, default=2, help="experts per token (default 2)")
    p.add_argument("--seed", type=int, default=0, help="weights' seed (default 0)")
    p.add_argument("--out", required=True, help="directory to write")

    p = commands.add_parser("calibrate-gpu", help="measure copy rates, expert FFN times and a MoE layer's overhead on "
                                                  "this machine's GPU and write a moesim hardware profile (needs torch)")
    p.add_argument("--out", required=True, help="hardware profile to write (.yaml)")
    p.add_argument("--runtime-out", help="also write a runtime profile (.yaml) with the measured overheads")
    p.add_argument("--device", default="cuda", help="cuda (default), or cpu to take the same measurements on the CPU")
    p.add_argument("--hidden", type=int, default=4096, help="model hidden size of the expert FFN (default 4096, Mixtral)")
    p.add_argument("--ffn", type=int, default=14336, help="expert intermediate size (default 14336, Mixtral)")
    p.add_argument("--experts", type=int, default=8, help="experts of the measured MoE layer (default 8)")
    p.add_argument("--top-k", type=int, default=2, help="experts per token of the measured MoE layer (default 2)")
    p.add_argument("--tokens", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128],
                   help="token counts for the expert FFN timing (default 1 2 4 … 128)")
    p.add_argument("--copy-mib", type=int, default=256, help="bytes per copy measured, MiB (default 256)")
    p.add_argument("--repeats", type=int, default=10, help="timed repetitions per figure, median kept (default 10)")
    p.add_argument("--name", default="my-gpu", help="the profile's name (default my-gpu)")
    p.add_argument("--weight-bits", type=int, default=16, choices=[2, 4, 8, 16],
                   help="store the measured expert's weights at 2, 4 or 8 bits (HQQ's layout: packed codes, a scale "
                        "and zero per group), dequantised then multiplied in eager PyTorch (default 16: the dtype)")
    p.add_argument("--group-size", type=int, default=64, help="weights per scale and zero with --weight-bits (default 64)")
    return parser


def _check_counts(args):
    """The import options' numbers in their ranges, each error naming its option."""
    whole(args.experts, "--experts", *EXPERTS)
    for n in getattr(args, "prompt_tokens", None) or []:
        whole(n, "--prompt-tokens", 0, TOKENS)
    for option, low in (("batch", 1), ("seq_len", 1), ("max_tokens", 1), ("rank", 0)):
        if getattr(args, option, None) is not None:
            whole(getattr(args, option), "--" + option.replace("_", "-"), low, TOKENS)


def _import(args):
    _check_counts(args)
    if args.source == "vllm":
        return _arrays(args, "vLLM") or vllm.import_responses(args.files, args.experts, args.model)
    if args.source == "sglang":
        builder = _arrays(args, "SGLang")
        if builder:
            return builder
        if args.layers is None or args.top_k is None:
            raise TraceError("--layers and --top-k: JSON responses carry the ids flat, so their shape must be given")
        return sglang.import_responses(args.files, args.layers, args.experts, args.top_k, args.model)
    if args.source == "npy":
        return npy.import_arrays(args.files, args.prompt_tokens, args.experts, args.model)
    if args.source == "sglang-dump":
        return sglang_dump.import_dump(args.paths, args.experts, args.model, args.rank)
    if args.source == "megatron":
        return megatron.import_traces(args.files, args.experts, args.batch, args.model)
    return parquet.import_folder(args.folder, args.experts, args.seq_len, args.phase, args.max_tokens, args.ids_column,
                                 args.weights_column or None, args.pattern, args.model, progress=_progress)


def _progress(line):
    print(line, file=sys.stderr, flush=True)


def _printable(text):
    """`text` on one line: control characters from the input (a column named `sc\x0bres`) are shown escaped, so an
    error never breaks a terminal line or spans several."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        if args.command in ("import", "record"):
            output_target(args.out)  # a name the trace cannot be written to is refused before any work
        if args.command == "tiny-model":
            tiny.write_tiny_model(args.family, args.out, args.layers, args.experts, args.top_k, args.seed)
            print(f"wrote {args.out}: a random {args.family} with {args.layers} layers of {args.experts} experts, top-{args.top_k}")
            return 0
        if args.command == "calibrate-gpu":
            return calibrate.main(args)
        if args.command == "record":
            builder = record.record(args.model, args.prompts, args.max_new_tokens, args.out, args.pred_width, args.name,
                                    args.device, args.dtype, progress=_progress)
        else:
            builder = _import(args)
            builder.write(args.out)
    except TraceError as e:
        print(f"moesim-trace: error: {_printable(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("moesim-trace: interrupted; nothing written", file=sys.stderr)
        return 130
    except (MemoryError, RecursionError) as e:
        print(f"moesim-trace: error: the input needs more {'memory' if isinstance(e, MemoryError) else 'nesting'} "
              "than this machine gives: split it, or import fewer files at once", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {builder.tokens} tokens in {builder.sequences} sequences, {builder.layers} MoE layers")
    if getattr(builder, "profile_path", None):
        print(f"wrote {builder.profile_path}: the model's profile, which moesim replay and plan read when no preset fits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
