import Foundation
import Testing
@testable import MoESim

/// Nothing a user wrote is lost (issue 25): every output finds its folder, no output names an input or another
/// output, and a run whose arrivals would pass the clock's range is refused before it starts.
@Suite struct OutputSafetyTests {
    let cli = CLITests()
    static let trace = packageRoot + "/traces/mixtral-synth.jsonl.gz"

    /// A folder with a copy of the bundled trace and a one-cell sweep config over it.
    func workspace() throws -> String {
        let dir = temporaryDirectory()
        try FileManager.default.copyItem(atPath: Self.trace, toPath: dir + "/t.jsonl.gz")
        try "traces: [t.jsonl.gz]\nmodels: [mixtral-8x7b]\nhardware: [a100-80gb-pcie]\npolicies: [lru]\naxes:\n  budget: [25%]\n"
            .write(toFile: dir + "/cfg.yaml", atomically: true, encoding: .utf8)
        return dir
    }

    /// Outputs under missing folders, one-letter names among them (Foundation's path arithmetic trapped on those),
    /// are written by every command, their folders created.
    @Test func everyOutputFindsItsFolder() throws {
        let dir = try workspace()
        let runs: [[String]] = [
            ["replay", "t.jsonl.gz", "--out", "o/r.csv", "--per-token", "x/y/t.csv", "--per-layer", "o/l.csv", "--timeline", "x/tl.json"],
            ["replay", "t.jsonl.gz", "--scheduler", "continuous", "--requests-csv", "p/q.csv"],
            ["compare", "--config", packageRoot + "/configs/default.yaml", "--trace", "t.jsonl.gz", "--budgets", "25%", "--out", "c/d.csv", "--markdown", "m/d.md"],
            ["sweep", "cfg.yaml", "--out", "s/w.csv"],
            ["trace", "convert", "t.jsonl.gz", "v/c.moet"],
            ["trace", "gen", "--model", "switch-base-128", "--tokens", "8", "--out", "g/t.jsonl"],
            ["trace", "split", "t.jsonl.gz", "--out-train", "a/1.jsonl", "--out-test", "b/2.jsonl"],
        ]
        for args in runs {
            let r = try cli.moesim(args, in: dir)
            #expect(r.status == 0, "\(args.joined(separator: " ")): \(r.stderr)")
        }
        for file in ["o/r.csv", "x/y/t.csv", "o/l.csv", "x/tl.json", "p/q.csv", "c/d.csv", "m/d.md", "s/w.csv", "v/c.moet", "g/t.jsonl",
                     "a/1.jsonl", "b/2.jsonl"] {
            #expect(FileManager.default.fileExists(atPath: dir + "/" + file), "\(file) was not written")
        }
    }

    @Test func pathArithmeticNeverTouchesFoundation() {
        #expect(FilePath.parent(of: "o/r.csv") == "o" && FilePath.parent(of: "r.csv") == "" && FilePath.parent(of: "/r") == "/")
        #expect(FilePath.parent(of: "x/y/") == "x" && FilePath.name(of: "x/y/") == "y" && FilePath.name(of: "o") == "o")
    }

    /// The issue's cases: each refused before it runs, naming both files, and every input byte-identical after.
    @Test func noOutputOverwritesAnInputOrAnotherOutput() throws {
        let dir = try workspace()
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.jsonl.gz", withDestinationPath: "t.jsonl.gz")
        let before = try [Data(contentsOf: URL(fileURLWithPath: dir + "/t.jsonl.gz")), Data(contentsOf: URL(fileURLWithPath: dir + "/cfg.yaml"))]
        let cases: [([String], [String])] = [
            (["sweep", "cfg.yaml", "--out", "t.jsonl.gz"], ["--out", "t.jsonl.gz"]),
            (["sweep", "cfg.yaml", "--out", "cfg.yaml"], ["--out", "the config"]),
            (["replay", "t.jsonl.gz", "--timeline", "t.jsonl.gz"], ["--timeline", "the trace"]),
            (["replay", "t.jsonl.gz", "--scheduler", "continuous", "--requests-csv", "link.jsonl.gz"], ["--requests-csv", "t.jsonl.gz"]),
            (["replay", "t.jsonl.gz", "--out", "acc.csv", "--per-token", "acc.csv"], ["--per-token", "--out"]),
            (["trace", "convert", "t.jsonl.gz", "./t.jsonl.gz"], ["the input trace"]),
            (["trace", "split", "t.jsonl.gz", "--out-train", "a.jsonl", "--out-test", "a.jsonl"], ["--out-test", "--out-train"]),
            (["plot", "t.jsonl.gz", "--out", "t.jsonl.gz"], ["--out", "the CSV"]),
        ]
        for (args, names) in cases {
            let r = try cli.moesim(args, in: dir)
            #expect(r.status != 0, "\(args.joined(separator: " ")) ran")
            for name in names { #expect(r.stderr.contains(name), "\(args.joined(separator: " ")): \(r.stderr)") }
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/acc.csv"))
        let after = try [Data(contentsOf: URL(fileURLWithPath: dir + "/t.jsonl.gz")), Data(contentsOf: URL(fileURLWithPath: dir + "/cfg.yaml"))]
        #expect(before == after)
    }

    /// For random combinations of replay's outputs drawn from the inputs' names, links to them, an existing report and
    /// fresh names, no run changes a byte of its inputs, and any run that writes an output names distinct files.
    @Test(arguments: Array(UInt64(1)...12))
    func noCombinationOfOutputsChangesAnInput(seed: UInt64) throws {
        let dir = try workspace()
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.jsonl.gz", withDestinationPath: "t.jsonl.gz")
        try "preset: a100-80gb-pcie\n".write(toFile: dir + "/hw.yaml", atomically: true, encoding: .utf8)
        let inputs = ["t.jsonl.gz", "hw.yaml"]
        let before = try inputs.map { try Data(contentsOf: URL(fileURLWithPath: dir + "/" + $0)) }
        let names = ["t.jsonl.gz", "./t.jsonl.gz", "link.jsonl.gz", "hw.yaml", "a.csv", "b.csv", "sub/../a.csv", "n/c.json"]
        var rng = SplitMix64(seed: seed)
        for _ in 0..<6 {
            let served = rng.nextInt(below: 2) == 0
            var args = ["replay", "t.jsonl.gz", "--hardware", "hw.yaml"] + (served ? ["--scheduler", "continuous"] : [])
            for option in ["--out", "--per-token", "--per-layer", "--timeline"] + (served ? ["--requests-csv"] : [])
            where rng.nextInt(below: 2) == 0 {
                args += [option, names[rng.nextInt(below: names.count)]]
            }
            _ = try cli.moesim(args, in: dir)
            let after = try inputs.map { try Data(contentsOf: URL(fileURLWithPath: dir + "/" + $0)) }
            #expect(after == before, "seed \(seed): \(args.joined(separator: " ")) changed an input")
        }
    }

    /// An output named through a symbolic link replaces the file the link leads to and keeps the link (it used to
    /// replace the link with a regular file); a link that leads nowhere is refused, writing nothing.
    @Test func anOutputThroughALinkWritesTheFileItLeadsTo() throws {
        let dir = try workspace()
        try "old".write(toFile: dir + "/target.jsonl", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.jsonl", withDestinationPath: "target.jsonl")
        let r = try cli.moesim(["trace", "convert", "t.jsonl.gz", "link.jsonl"], in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: dir + "/link.jsonl") == "target.jsonl")
        #expect(try RoutingTrace.load(dir + "/target.jsonl").tokenCount == (try RoutingTrace.load(dir + "/t.jsonl.gz").tokenCount))
        try FileManager.default.createSymbolicLink(atPath: dir + "/dangling.csv", withDestinationPath: "nowhere/r.csv")
        let d = try cli.moesim(["replay", "t.jsonl.gz", "--out", "dangling.csv"], in: dir)
        #expect(d.status != 0 && d.stderr.contains("dangling.csv: is a link to a file that does not exist"), "\(d.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/nowhere"))
    }

    /// Arrivals that would carry a run past the clock's range (2^62 ns) are refused before it starts: a closed loop
    /// whose think times add up (9,300 requests × 10^6 s), and a Poisson process of 10^-6 requests/s (its arrivals used
    /// to be clamped at 4.6 × 10^9 s and queue behind each other, exit 0).
    @Test func arrivalsPastTheClocksRangeAreRefused() throws {
        let model = try ModelProfile.preset("switch-base-128")
        var spec = SyntheticTraceSpec(tokens: 9_300, seed: 1)
        spec.sequences = 9_300
        spec.prefillTokens = 1
        let trace = try SyntheticTraceGenerator(model: model, spec: spec).makeTrace()
        for arrivals in [ArrivalProcess.closedLoop(users: 1, thinkSeconds: 1e6), .poisson(rate: 1e-6, seed: 1)] {
            var replay = ReplaySpec(model: model, hardware: try HardwareProfile.preset("a100-80gb-pcie"), policy: .lru, budget: .share(0.25))
            replay.serving.scheduler = .continuous
            replay.serving.arrivals = arrivals
            #expect { _ = try Replayer.serve(trace: trace, plan: StepPlan(trace), spec: replay) } throws: {
                "\($0)".contains("serving.arrivals") && "\($0)".contains("146 years")
            }
        }
    }
}
