"""`moesim-trace`: routing traces for moesim from the engines people run."""
import argparse
import sys

from . import npy, sglang
from .trace import TraceError


def main(argv=None):
    parser = argparse.ArgumentParser(prog="moesim-trace", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    imports = commands.add_parser("import", help="convert an engine's routing output to a moesim trace")
    sources = imports.add_subparsers(dest="source", required=True)
    sg = sources.add_parser("sglang", help="saved SGLang /generate responses with meta_info.routed_experts")
    sg.add_argument("files", nargs="+", help="JSON files: one response, or a list of them")
    sg.add_argument("--layers", type=int, required=True, help="layers in the routed-experts array (the model's decoder layers)")
    sg.add_argument("--experts", type=int, required=True, help="routed experts per layer")
    sg.add_argument("--top-k", type=int, required=True, help="experts per token (num_experts_per_tok)")
    sg.add_argument("--model", help="model name for the header (a moesim preset name lets replay pick it)")
    sg.add_argument("--out", required=True, help="output trace, .jsonl or .jsonl.gz")
    ar = sources.add_parser("npy", help="routed experts as .npy arrays [tokens, layers, top_k], one request per file "
                                        "(vLLM's or SGLang's routed_experts, saved with numpy.save)")
    ar.add_argument("files", nargs="+", help=".npy files, one per request")
    ar.add_argument("--prompt-tokens", type=int, nargs="+", required=True,
                    help="prompt tokens of each request (one count, or one per file): those rows are the prefill")
    ar.add_argument("--experts", type=int, required=True, help="routed experts per layer")
    ar.add_argument("--model", help="model name for the header")
    ar.add_argument("--out", required=True, help="output trace, .jsonl or .jsonl.gz")
    args = parser.parse_args(argv)
    try:
        if args.source == "sglang":
            builder = sglang.import_responses(args.files, args.layers, args.experts, args.top_k, args.model)
        else:
            builder = npy.import_arrays(args.files, args.prompt_tokens, args.experts, args.model)
        builder.write(args.out)
    except TraceError as e:
        print(f"moesim-trace: error: {e}", file=sys.stderr)
        return 1
    sequences = len({line["seq"] for line in builder.lines})
    print(f"wrote {args.out}: {len(builder.lines)} tokens in {sequences} sequences, {builder.layers} MoE layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
