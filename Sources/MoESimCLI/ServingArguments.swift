import ArgumentParser
import MoESim

/// `--scheduler`, `--batch`, `--max-seqs`, `--max-tokens`, `--prefill-chunk`, `--arrivals`, `--slo-ttft`, `--slo-tpot`:
/// how requests arrive and are batched (docs/serving.md).
struct ServingArguments: ParsableArguments, SectionArguments {
    typealias Section = ServingOptions

    @Option(help: "Batching: sequential (batch 1, trace order, no arrivals), static (--batch requests run to completion), or continuous (admit at every step up to --max-seqs and --max-tokens).")
    var scheduler: ServingOptions.Scheduler?

    @Option(help: "static: requests per batch (default 1).")
    var batch: String?

    @Option(help: "continuous: requests running at once (default 16).")
    var maxSeqs: String?

    @Option(help: "continuous: tokens per step, decode tokens first (default 2048).")
    var maxTokens: String?

    @Option(help: "continuous: most prompt tokens of one request per step (default 512).")
    var prefillChunk: String?

    @Option(help: "Request arrivals: all-at-once (default), trace (each sequence's arrival_s), poisson:RATE[:SEED] (requests/s), closed:USERS:THINK_S.")
    var arrivals: String?

    @Option(help: "SLO on time to first token (s); with --slo-tpot it defines goodput.")
    var sloTtft: String?

    @Option(help: "SLO on time per output token (s).")
    var sloTpot: String?

    var settings: [(key: String, flag: String, value: String?)] {
        [("scheduler", "--scheduler", scheduler?.rawValue), ("batch", "--batch", batch), ("max_seqs", "--max-seqs", maxSeqs),
         ("max_tokens", "--max-tokens", maxTokens), ("prefill_chunk", "--prefill-chunk", prefillChunk),
         ("arrivals", "--arrivals", arrivals), ("slo_ttft_s", "--slo-ttft", sloTtft), ("slo_tpot_s", "--slo-tpot", sloTpot)]
    }
}

extension ServingOptions.Scheduler: ExpressibleByArgument {}
