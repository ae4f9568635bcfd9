import Foundation
import Testing
@testable import MoESim

/// A setting given where nothing of the run takes it is refused, on the command line and in YAML, naming the
/// setting and what takes it (issue 25, item 6).
@Suite struct SettingScopeTests {
    let cli = CLITests()

    @Test func optionsThatDoNotApplyAreRefusedOnTheCommandLine() throws {
        let cases: [([String], String)] = [
            (["--policy", "skip", "--threshold", "0"], "--threshold applies to mixed-precision, mixed-skip; this run's strategy is skip"),
            (["--scheduler", "continuous", "--batch", "4"], "--batch applies to the static scheduler; this run's scheduler is continuous"),
            (["--scheduler", "static", "--max-seqs", "4"], "--max-seqs applies to the continuous scheduler"),
            (["--max-seqs", "4"], "this run's scheduler is sequential"),
            (["--policy", "lru", "--train-split", "0.5"], "--train-split applies to static-frequency"),
            (["--policy", "lru", "--cpu-layers", "2"], "--cpu-layers applies to n-cpu-moe"),
            (["--policy", "pregated", "--rest", "cpu"], "--rest applies to static-frequency, n-cpu-moe"),
            (["--policy", "lru", "--lookahead", "2"], "--lookahead applies to oracle-prefetch"),
            (["--policy", "pregated", "--accuracy", "0.9"], "--accuracy applies to cross-layer-gate"),
            (["--policy", "lru", "--buffer", "0.5"], "--buffer applies to prefetch-all, pregated"),
            (["--policy", "mixed-precision", "--skip-threshold", "0.1"], "--skip-threshold applies to skip, mixed-skip"),
        ]
        for (args, message) in cases {
            let r = try cli.moesim(["replay", "traces/golden-tiny.jsonl", "--model", "mixtral-8x7b", "--set", "model.layers=2",
                                    "--set", "model.experts=4"] + args)
            #expect(r.status != 0 && r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        // What takes a setting still gets it.
        let ok = try cli.moesim(["replay", "traces/mixtral-synth.jsonl.gz", "--policy", "mixed-skip", "--threshold", "0.2",
                                 "--skip-threshold", "0.05", "--scheduler", "static", "--batch", "2"])
        #expect(ok.status == 0, "\(ok.stderr)")
    }

    @Test func settingsThatDoNotApplyAreRefusedInConfigsWithTheirLine() throws {
        let dir = temporaryDirectory()
        let compare = dir + "/c.yaml"
        try """
            trace: \(packageRoot)/traces/mixtral-synth.jsonl.gz
            model: mixtral-8x7b
            hardware: a100-80gb-pcie
            budget: 25%
            policies: [lru, skip]
            precision: {threshold: 0.2}
            """.write(toFile: compare, atomically: true, encoding: .utf8)
        let r = try cli.moesim(["compare", "--config", compare, "--out", dir + "/o.csv"])
        #expect(r.status != 0 && r.stderr.contains("precision.threshold (\(compare):6) applies to mixed-precision, mixed-skip"), "\(r.stderr)")
        // A sweep axis under the wrong scheduler, and a section setting no strategy of the grid takes.
        let sweep = """
            traces: [\(packageRoot)/traces/golden-tiny.jsonl]
            models: [{preset: mixtral-8x7b, layers: 2, experts: 4, top_k: 2}]
            hardware: [a100-80gb-pcie]
            policies: [lru]
            serving: {scheduler: continuous}
            axes:
              budget: [4experts]
              serving.batch: [2, 4]
            """
        #expect { _ = try SweepConfig.parse(sweep, path: "s.yaml") } throws: {
            "\($0)".contains("axis serving.batch (s.yaml:8) applies to the static scheduler; this run's scheduler is continuous")
        }
        #expect { _ = try SweepConfig.parse(sweep.replacingOccurrences(of: "\n  serving.batch: [2, 4]", with: "")
                                                 .replacingOccurrences(of: "serving: {scheduler: continuous}", with: "placement: {rest: cpu}"), path: "s.yaml") } throws: {
            "\($0)".contains("placement.rest (s.yaml:5) applies to static-frequency, n-cpu-moe")
        }
        // A scheduler axis that includes static takes serving.batch.
        _ = try SweepConfig.parse(sweep.replacingOccurrences(of: "serving: {scheduler: continuous}\n", with: "")
                                       .replacingOccurrences(of: "serving.batch: [2, 4]", with: "serving.scheduler: [static, continuous]\n  serving.batch: [2, 4]"),
                                  path: "s.yaml")
    }
}
