import Foundation
import Testing
@testable import MoESim

/// One range per setting, one answer per input (issue 25, item 7): the command line reads its numbers as a config
/// does, profiles of one's own cannot pass for presets, and a sweep checks every cell before the first runs.
@Suite struct OneRangeTests {
    let cli = CLITests()
    let trace = "traces/mixtral-synth.jsonl.gz"

    @Test func theCommandLineReadsNumbersAsAConfigDoes() throws {
        let cases: [([String], String)] = [
            (["--scheduler", "static", "--slo-ttft", "1e-10", "--slo-tpot", "0.1"], "--slo-ttft: "),
            (["--scheduler", "static", "--slo-ttft", "1", "--slo-tpot", "1e308"], "--slo-tpot: "),
            (["--scheduler", "static", "--slo-ttft", "NaN", "--slo-tpot", "0.1"], "--slo-ttft: "),
            (["--scheduler", "static", "--slo-ttft", "1"], "serving.slo_ttft_s and slo_tpot_s"),
            (["--policy", "static-frequency", "--train-split", "0x0.8"], "--train-split: "),
            (["--policy", "pregated", "--buffer", "1.5e-323"], "--buffer: "),
            (["--scheduler", "static", "--batch", "0"], "--batch: "),
            (["--scheduler", "continuous", "--max-seqs", "4.5"], "--max-seqs: "),
            (["--policy", "oracle-prefetch", "--lookahead", "0"], "--lookahead: "),
        ]
        for (args, message) in cases {
            let r = try cli.moesim(["replay", trace] + args)
            #expect(r.status != 0 && r.stderr.contains(message) && !r.stderr.contains("Fatal"), "\(args): \(r.stderr)")
        }
        // The same values in YAML get the same answer: the range lives in one place.
        for (key, value) in [("slo_ttft_s", "1e-10"), ("slo_tpot_s", "1e308")] {
            var serving = ServingOptions()
            #expect(throws: ConfigError.self) { try serving.set(key, to: value, origin: "t") }
        }
        let ok = try cli.moesim(["replay", trace, "--scheduler", "static", "--slo-ttft", "2", "--slo-tpot", "0.2"])
        #expect(ok.status == 0, "\(ok.stderr)")
    }

    @Test func subnormalNumbersAreRefusedNotReadAsZero() {
        #expect(DecimalText.double("1.5e-323") == nil)
        #expect(DecimalText.double("2.2250738585072014e-308") == 2.2250738585072014e-308)  // the smallest normal
        #expect(DecimalText.double("0") == 0 && DecimalText.double("-0.0") == 0)
    }

    @Test func aProfileMustBeAFileOrAPreset() throws {
        let dir = temporaryDirectory()
        let folder = try cli.moesim(["replay", trace, "--runtime", dir])
        #expect(folder.status != 0 && folder.stderr.contains("is a folder, not a runtime preset or profile file"), "\(folder.stderr)")
        try "x".write(toFile: dir + "/r.txt", atomically: true, encoding: .utf8)
        let text = try cli.moesim(["replay", trace, "--hardware", dir + "/r.txt"])
        #expect(text.status != 0 && text.stderr.contains("a profile file's name ends in .yaml or .yml"), "\(text.stderr)")
    }

    @Test func aProfileOfOnesOwnCannotTakeAPresetsName() throws {
        let dir = temporaryDirectory()
        try "preset: cuda-graph\nname: ideal\n".write(toFile: dir + "/r.yaml", atomically: true, encoding: .utf8)
        let r = try cli.moesim(["replay", trace, "--runtime", dir + "/r.yaml"])
        #expect(r.status != 0 && r.stderr.contains("runtime.name 'ideal' is a preset's"), "\(r.stderr)")
        try "preset: cuda-graph\nname: my-graphs\n".write(toFile: dir + "/ok.yaml", atomically: true, encoding: .utf8)
        let ok = try cli.moesim(["replay", trace, "--runtime", dir + "/ok.yaml", "--out", dir + "/o.csv"])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(try String(contentsOfFile: dir + "/o.csv", encoding: .utf8).contains(",my-graphs,"))
    }

    @Test func aProfileKeyMustBeAName() throws {
        let dir = temporaryDirectory()
        try """
            trace: \(packageRoot)/\(trace)
            model: {preset: mixtral-8x7b, [hbm_fraction]: 0.001}
            hardware: a100-80gb-pcie
            budget: 25%
            policies: [lru]
            """.write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        let r = try cli.moesim(["compare", "--config", dir + "/c.yaml", "--out", dir + "/o.csv"])
        #expect(r.status != 0 && r.stderr.contains("c.yaml:2") && r.stderr.contains("keys are names"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/o.csv"))
    }

    @Test func aBooleanIsNotACount() throws {
        let header = #"{"format":"moe-routing-trace","version":1,"model":"m","layers":2,"experts":4,"top_k":true}"#
        #expect { _ = try RoutingTrace.load(bytes: Array((header + "\n").utf8), path: "t.jsonl") } throws: {
            "\($0)".contains("top_k") && "\($0)".contains("not an integer")
        }
        let version = #"{"format":"moe-routing-trace","version":true,"model":"m","layers":2,"experts":4,"top_k":2}"#
        #expect(throws: TraceError.self) { _ = try RoutingTrace.load(bytes: Array((version + "\n").utf8), path: "t.jsonl") }
    }

    /// A header and no tokens: the same refusal whole and streamed.
    @Test func aTraceOfOnlyAHeaderGetsOneAnswer() throws {
        let dir = temporaryDirectory()
        let path = dir + "/h.jsonl"
        try #"{"format":"moe-routing-trace","version":1,"model":"mixtral-8x7b","layers":32,"experts":8,"top_k":2}"#
            .appending("\n").write(toFile: path, atomically: true, encoding: .utf8)
        let whole = try cli.moesim(["replay", path])
        let streamed = try cli.moesim(["replay", path, "--stream"])
        for r in [whole, streamed] {
            #expect(r.status != 0 && r.stderr.contains("h.jsonl: a header and no token lines: nothing to replay"), "\(r.stderr)")
        }
        #expect(whole.stderr == streamed.stderr)
    }

    static let sweep = """
        traces: [\(packageRoot)/traces/mixtral-synth.jsonl.gz]
        models: [mixtral-8x7b]
        hardware: [a100-80gb-pcie]
        policies: [lru]
        serving: {scheduler: continuous}
        axes:
          budget: [25%]
        """

    /// A later cell that cannot run stops the sweep before the first runs: no rows, no journal.
    @Test func aSweepChecksEveryCellBeforeAnyRuns() throws {
        let cases: [(String, String)] = [
            ("  serving.max_seqs: [1, 4096]\n", "serving.max_seqs 4096"),
            ("  serving.arrivals: [all-at-once, trace]\n", "arrival_s"),
        ]
        for (axis, message) in cases {
            let out = temporaryDirectory() + "/s.csv"
            #expect {
                let cfg = try SweepConfig.parse(Self.sweep + "\n" + axis, path: "s.yaml")
                try SweepRunner(config: cfg, output: out, jobs: 1).run()
            } throws: { "\($0)".contains(message) }
            #expect(!FileManager.default.fileExists(atPath: out) && !FileManager.default.fileExists(atPath: out + ".partial"),
                    "\(axis)")
        }
    }

    @Test func anAxisValueOnce() {
        for (axis, message) in [("  serving.max_seqs: [4, 8, 4]\n", "gives '4' after '4'"),
                                ("  serving.arrivals: [\"poisson:2\", \"poisson:2.0\"]\n", "the same setting")] {
            #expect { _ = try SweepConfig.parse(Self.sweep + "\n" + axis, path: "s.yaml") } throws: {
                "\($0)".contains(message) && "\($0)".contains("s.yaml:")
            }
        }
        #expect { _ = try SweepConfig.parse(Self.sweep.replacingOccurrences(of: "budget: [25%]", with: "budget: [25%, 25.0%]"), path: "s.yaml") }
            throws: { "\($0)".contains("axis budget gives '25.0%' after '25%'") }
        #expect { _ = try SweepConfig.parse(Self.sweep.replacingOccurrences(of: "[lru]", with: "[lru, lfu, lru]"), path: "s.yaml") }
            throws: { "\($0)".contains("policies lists lru twice") }
    }
}
