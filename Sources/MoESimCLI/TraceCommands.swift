import ArgumentParser
import Foundation
import MoESim

struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Check, summarise and generate routing traces.",
        subcommands: [Validate.self, Stats.self, Gen.self, Convert.self, Split.self])

    struct Split: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a trace's first sequences and the rest as two traces (for placements learnt on one part).",
            discussion: "The first round(TRAIN × sequences) sequences, in order of first appearance (at least one in each part), go to --out-train, the rest to --out-test; each token is kept whole. static-frequency splits the same way (docs/policies.md).")

        @Argument(help: "Input trace (.jsonl, .jsonl.gz or .moet).") var input: String
        @Option(help: "Share of the sequences in the training part, strictly between 0 and 1.") var train: Double = 0.5
        @Option(help: "Training part's output (.jsonl, .jsonl.gz or .moet).") var outTrain: String
        @Option(help: "Test part's output.") var outTest: String

        func run() throws {
            guard train > 0 && train < 1 else {
                throw ValidationError("--train must be strictly between 0 and 1 (e.g. 0.5): both parts need sequences; got \(train)")
            }
            var files = FileRoles()
            files.input("the input trace", input)
            files.output("--out-train", outTrain)
            files.output("--out-test", outTest)
            try files.check()
            let (trainPart, testPart) = try RoutingTrace.load(input).split(trainShare: train)
            try trainPart.write(to: outTrain)
            try testPart.write(to: outTest)
            for (path, part) in [(outTrain, trainPart), (outTest, testPart)] {
                let sequences = Set(part.seq).count
                print("wrote \(path): \(part.tokenCount) tokens in \(sequences) sequences")
            }
        }
    }

    struct Convert: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Convert a trace between .jsonl, .jsonl.gz and the binary .moet format (by the names' endings).",
            discussion: "The binary format loads tens of times faster than JSON (docs/trace-format.md, docs/performance.md).")

        @Argument(help: "Input trace.") var input: String
        @Argument(help: "Output trace (.jsonl, .jsonl.gz or .moet).") var output: String

        func run() throws {
            var files = FileRoles()
            files.input("the input trace", input)
            files.output("the output", output)
            try files.check()
            let (header, tokens) = try RoutingTrace.convert(input, to: output)
            print("wrote \(output): \(tokens) tokens, \(header.layers) layers, \(header.experts) experts, top-\(header.topK)")
        }
    }

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every line of a trace; print its shape, or the first error with file, line and field.")

        @Argument(help: "Routing trace (.jsonl, .jsonl.gz or .moet).")
        var file: String

        func run() throws {
            let (h, tokens, missing) = try RoutingTrace.check(file)
            print("\(file): valid moe-routing-trace v1: \(tokens) tokens, \(h.layers) layers, "
                  + "\(h.experts) experts, top-\(h.topK), \(missing) null cells")
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a trace's shape, popularity skew, temporal reuse, reuse distance, working sets and inter-layer predictability.")

        @Argument(help: "Routing trace (.jsonl or .jsonl.gz).")
        var file: String

        func run() throws {
            let trace = try RoutingTrace.load(file)
            let s = TraceStats(trace)
            let h = trace.header
            func f(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "-" }
            let uniform = Double(max(1, (h.experts + 3) / 4)) / Double(h.experts)
            print("""
                trace            \(file)
                model            \(h.model)
                shape            \(h.layers) layers, \(h.experts) experts, top-\(h.topK)
                tokens           \(s.tokens) (\(s.prefillTokens) prefill, \(s.decodeTokens) decode) in \(s.sequences) sequences
                null cells       \(s.missingCells) of \(s.tokens * h.layers)
                top-25% share    mean \(f(s.topQuarterShare.mean)), min \(f(s.topQuarterShare.min)), max \(f(s.topQuarterShare.max)) (uniform \(f(uniform)))
                reuse t->t+1     all \(f(s.temporalReuse.all)), prefill \(f(s.temporalReuse.prefill)), decode \(f(s.temporalReuse.decode)) (uniform \(f(Double(h.topK) / Double(h.experts))))
                reuse distance   median \(s.reuseDistance.median.map { "\(Int($0)) tokens" } ?? "-"); reused within 1 token \(f(s.reuseDistance.within1)), within 8 tokens \(f(s.reuseDistance.within8)) (same layer and sequence)
                working set      distinct experts per layer \(s.workingSets.map { "over \($0.window) tokens: mean \(String(format: "%.2f", $0.mean)) (largest layer \(String(format: "%.2f", $0.largestLayer)))" }.joined(separator: "; "))
                inter-layer      recall@\(h.topK) \(f(s.interLayerRecall)) by conditional frequency, \(f(s.interLayerBaseline)) by popularity (\(s.recallTokens) tokens evaluated)
                """)
        }
    }

    struct Gen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a seeded synthetic trace for a model preset.",
            discussion: "Defaults reproduce the real Mixtral-8x7B routing statistics (docs/trace-format.md).")

        @Option(help: "Model preset whose shape the trace takes.")
        var model: String = "mixtral-8x7b"
        @Option(help: "Tokens in all.") var tokens: Int
        @Option(help: "Random seed.") var seed: UInt64 = 1
        @Option(help: "Output file (.jsonl, .jsonl.gz or .moet).") var out: String
        @Option(help: "Sequences the tokens are split into (default 4).") var sequences: Int?
        @Option(help: "Prefill (prompt) tokens at the start of each sequence (default 32).") var prefill: Int?
        @Option(help: "Zipf exponent of per-layer expert popularity, 0 = uniform (default 0.2).") var skew: Double?
        @Option(help: "Chance a slot reuses an expert of the previous token (default 0.18).") var reuse: Double?
        @Option(help: "Chance a slot follows the previous layer's affinity partner (default 0.25).") var affinity: Double?
        @OptionGroup var overrides: OverrideOptions

        func run() throws {
            var profile = try ModelProfile.preset(model)
            var unusedHardware = HardwareProfile.presets[0]
            try overrides.apply(model: &profile, hardware: &unusedHardware)
            var spec = SyntheticTraceSpec(tokens: tokens, seed: seed)
            if let sequences { spec.sequences = sequences }
            if let prefill { spec.prefillTokens = prefill }
            if let skew { spec.zipfSkew = skew }
            if let reuse { spec.reuse = reuse }
            if let affinity { spec.affinity = affinity }
            try SyntheticTraceGenerator(model: profile, spec: spec).write(to: out)
            print("wrote \(out): \(tokens) tokens, \(profile.name) (\(profile.layers) layers, \(profile.experts) experts, top-\(profile.topK)), seed \(seed)")
        }
    }
}

struct Profiles: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the built-in model, hardware and runtime presets.")

    func run() {
        print("models:")
        for m in ModelProfile.presets {
            print("  \(m.name.padding(toLength: 18, withPad: " ", startingAt: 0)) \(m.layers) layers x \(m.experts) experts, "
                  + "top-\(m.topK), expert \(formatBytes(m.expertBytes)), all experts \(formatBytes(m.totalExpertBytes))")
        }
        print("hardware:")
        for h in HardwareProfile.presets {
            print("  \(h.name.padding(toLength: 18, withPad: " ", startingAt: 0)) \(formatBytes(Int(h.gpuMemoryBytes))), "
                  + "HBM \(Int(h.hbmBytesPerSecond / 1e9)) GB/s, \(Int(h.gpuFlops / 1e12)) TFLOP/s, "
                  + "link \(Int(h.linkBytesPerSecond / 1e9)) GB/s + \(Int(h.linkLatencySeconds * 1e6)) µs")
        }
        print("runtime:")
        for r in RuntimeProfile.presets {
            print("  \(r.name.padding(toLength: 18, withPad: " ", startingAt: 0)) layer +\(r.layerOverheadSeconds * 1e6) µs, "
                  + "expert +\(r.expertOverheadSeconds * 1e6) µs, HBM x\(r.hbmFraction), FLOP/s x\(r.flopsFraction), "
                  + "\(r.hostBuffer.rawValue) buffers, dequant \(r.dequantBytesPerWeight) B/weight, predictor +\(r.predictorSeconds * 1e6) µs, "
                  + "demand copies on the \(r.demandCopyStream.rawValue) stream")
        }
    }
}
