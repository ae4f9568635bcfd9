import ArgumentParser
import MoESim

/// `--scheduler`, `--batch`, `--max-seqs`, `--max-tokens`, `--prefill-chunk`, `--arrivals`, `--slo-ttft`, `--slo-tpot`:
/// how requests arrive and are batched (docs/serving.md).
struct ServingArguments: ParsableArguments {
    @Option(help: "Batching: sequential (batch 1, trace order, no arrivals), static (--batch requests run to completion), or continuous (admit at every step up to --max-seqs and --max-tokens).")
    var scheduler: ServingOptions.Scheduler?

    @Option(help: "static: requests per batch (default 1).")
    var batch: Int?

    @Option(help: "continuous: requests running at once (default 16).")
    var maxSeqs: Int?

    @Option(help: "continuous: tokens per step, decode tokens first (default 2048).")
    var maxTokens: Int?

    @Option(help: "continuous: most prompt tokens of one request per step (default 512).")
    var prefillChunk: Int?

    @Option(help: "Request arrivals: all-at-once (default), trace (each sequence's arrival_s), poisson:RATE[:SEED] (requests/s), closed:USERS:THINK_S.")
    var arrivals: String?

    @Option(help: "SLO on time to first token (s); with --slo-tpot it defines goodput.")
    var sloTtft: Double?

    @Option(help: "SLO on time per output token (s).")
    var sloTpot: Double?

    var given: [(key: String, named: String)] {
        [("serving.batch", "--batch", batch != nil), ("serving.max_seqs", "--max-seqs", maxSeqs != nil),
         ("serving.max_tokens", "--max-tokens", maxTokens != nil), ("serving.prefill_chunk", "--prefill-chunk", prefillChunk != nil),
         ("serving.arrivals", "--arrivals", arrivals != nil), ("serving.slo_ttft_s", "--slo-ttft", sloTtft != nil),
         ("serving.slo_tpot_s", "--slo-tpot", sloTpot != nil)].filter(\.2).map { ($0.0, $0.1) }
    }

    /// `base` with the options given on the command line.
    func options(base: ServingOptions) throws -> ServingOptions {
        var o = base
        if let scheduler { o.scheduler = scheduler }
        if let batch { o.batch = batch }
        if let maxSeqs { o.maxSeqs = maxSeqs }
        if let maxTokens { o.maxTokens = maxTokens }
        if let prefillChunk { o.prefillChunk = prefillChunk }
        if let arrivals { o.arrivals = try ArrivalProcess.parse(arrivals, field: "--arrivals") }
        switch (sloTtft, sloTpot) {
        case let (ttft?, tpot?): o.slo = ServiceLevel(ttftSeconds: ttft, tpotSeconds: tpot)
        case (nil, nil): break
        default: throw ValidationError("--slo-ttft and --slo-tpot go together")
        }
        try o.validate()
        return o
    }
}

extension ServingOptions.Scheduler: ExpressibleByArgument {}
