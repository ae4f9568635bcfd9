import Foundation
import Testing
@testable import MoESim

/// Runs the built `moesim` binary as a user would and checks what it prints, writes and returns.
@Suite struct CLITests {
    struct Output { let status: Int32; let stdout: String; let stderr: String }

    static let binary: String? = {
        var candidates: [String] = []
        if let exe = Bundle.main.executableURL { candidates.append(exe.deletingLastPathComponent().path + "/moesim") }
        candidates.append(packageRoot + "/.build/debug/moesim")
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    func moesim(_ arguments: String..., in directory: String = packageRoot) throws -> Output {
        try moesim(arguments, in: directory)
    }

    func moesim(_ arguments: [String], in directory: String = packageRoot) throws -> Output {
        let binary = try #require(Self.binary, "the moesim binary is built with the tests")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Output(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
    }

    @Test func traceHelpIsExact() throws {
        let r = try moesim("trace", "--help")
        #expect(r.status == 0)
        #expect(r.stdout == """
            OVERVIEW: Check, summarise and generate routing traces.

            USAGE: moesim trace <subcommand>

            OPTIONS:
              --version               Show the version.
              -h, --help              Show help information.

            SUBCOMMANDS:
              validate                Check every line of a trace; print its shape, or the
                                      first error with file, line and field.
              stats                   Print a trace's shape, popularity skew, temporal
                                      reuse, reuse distance, working sets and inter-layer
                                      predictability.
              gen                     Write a seeded synthetic trace for a model preset.
              convert                 Convert a trace between .jsonl, .jsonl.gz and the
                                      binary .moet format (by the names' endings).
              split                   Write a trace's first sequences and the rest as two
                                      traces (for placements learnt on one part).

              See 'moesim help trace <subcommand>' for detailed help.

            """)
    }

    @Test func validateReportsTheShapeOrTheFirstError() throws {
        let ok = try moesim("trace", "validate", "traces/golden-tiny.jsonl")
        #expect(ok.status == 0)
        #expect(ok.stdout == "traces/golden-tiny.jsonl: valid moe-routing-trace v1: 6 tokens, 2 layers, 4 experts, top-2, 0 null cells\n")
        let bad = writeTemporary(TraceFormatTests.header + "\n" + #"{"seq":0,"pos":0,"phase":"decode","experts":[[0,9],[1,2]]}"# + "\n")
        let r = try moesim("trace", "validate", bad)
        #expect(r.status != 0)
        #expect(r.stderr.contains("\(bad):2: field 'experts': layer 0: expert id 9 out of range 0..<4"))
    }

    /// `trace split` writes the first sequences and the rest; the parts together are the input, token for token.
    @Test func traceSplitWritesTwoTracesBySequence() throws {
        let dir = temporaryDirectory()
        let r = try moesim("trace", "split", "traces/mixtral-synth.jsonl.gz", "--train", "0.25", "--out-train", dir + "/a.jsonl.gz",
                           "--out-test", dir + "/b.moet")
        #expect(r.status == 0, "\(r.stderr)")
        let whole = try RoutingTrace.load(packageRoot + "/traces/mixtral-synth.jsonl.gz")
        let a = try RoutingTrace.load(dir + "/a.jsonl.gz"), b = try RoutingTrace.load(dir + "/b.moet")
        #expect(Set(a.seq).count == 1 && Set(b.seq).count == 3 && Set(a.seq).isDisjoint(with: Set(b.seq)))
        #expect(a.tokenCount + b.tokenCount == whole.tokenCount)
        #expect(a.experts + b.experts == whole.experts)  // mixtral-synth's sequences are contiguous: order kept
        for bad in ["0", "1", "1.5"] {
            let e = try moesim("trace", "split", "traces/mixtral-synth.jsonl.gz", "--train", bad, "--out-train", dir + "/c.jsonl",
                               "--out-test", dir + "/d.jsonl")
            #expect(e.status != 0 && e.stderr.contains("strictly between 0 and 1"))
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/c.jsonl"))
    }

    /// The issue's first try: compare under a runtime and a consumer GPU, then a misspelt runtime.
    @Test func compareTakesARuntimeAndAGPU() throws {
        let csv = temporaryDirectory() + "/c.csv"
        let r = try moesim("compare", "--runtime", "pytorch-eager", "--hardware", "rtx3060", "--budget", "16experts", "--out", csv)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("mixtral-8x7b on rtx3060 (pytorch-eager runtime)"))
        let rows = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
        let header = rows[0].split(separator: ",").map(String.init)
        let column = try #require(header.firstIndex(of: "runtime"))
        #expect(rows.dropFirst().allSatisfy { $0.split(separator: ",", omittingEmptySubsequences: false)[column] == "pytorch-eager" })
        let bad = try moesim("replay", "traces/mixtral-synth.jsonl.gz", "--runtime", "pytorch-eagre")
        #expect(bad.status != 0 && bad.stderr.contains("unknown runtime preset 'pytorch-eagre'. Did you mean 'pytorch-eager'?"))
        let split = try moesim("replay", "traces/mixtral-synth.jsonl.gz", "--policy", "static-frequency", "--train-split", "1")
        #expect(split.status != 0 && split.stderr.contains("placement.train_split"))
    }

    @Test func replayPrintsASummaryAndAppendsIdenticalRows() throws {
        let csv = temporaryDirectory() + "/runs.csv"
        for _ in 0..<2 {
            let r = try moesim("replay", "traces/mixtral-synth.jsonl.gz", "--policy", "lru", "--budget", "64experts", "--out", csv)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("mixtral-synth: mixtral-8x7b on a100-80gb-pcie (ideal runtime), lru, budget 21.0 GiB (64 experts)"))
            #expect(r.stdout.contains("row appended to \(csv)"))
        }
        let lines = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines[0] == Metric.header.joined(separator: ","))
        #expect(lines[1] == lines[2])
        #expect(lines[1].hasPrefix("mixtral-synth,mixtral-8x7b,a100-80gb-pcie,lru,global,lru,,,,,,22548578304,64,1024,"))
    }

    @Test func compareIsTheMainJob() throws {
        let csv = temporaryDirectory() + "/compare.csv"
        let r = try moesim("compare", "--out", csv)
        #expect(r.status == 0, "\(r.stderr)")
        for policy in PolicyKind.allCases { #expect(r.stdout.contains("\n\(policy.rawValue) ")) }
        let rows = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
        #expect(rows.count == 1 + PolicyKind.allCases.count)
        let again = temporaryDirectory() + "/compare.csv"
        _ = try moesim("compare", "--out", again)
        #expect(try Data(contentsOf: URL(fileURLWithPath: csv)) == Data(contentsOf: URL(fileURLWithPath: again)))
    }

    /// static-frequency needs two sequences to split: on a trace of one, compare leaves it out with a note and runs
    /// the rest; asked for alone, it says why nothing runs.
    @Test func compareLeavesTheLearnedPlacementOutOfAOneSequenceTrace() throws {
        let dir = temporaryDirectory(), trace = dir + "/one.jsonl", csv = dir + "/c.csv"
        let gen = try moesim("trace", "gen", "--model", "mixtral-8x7b", "--tokens", "40", "--sequences", "1", "--out", trace)
        #expect(gen.status == 0, "\(gen.stderr)")
        let r = try moesim("compare", "--trace", trace, "--out", csv)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("note: one has one sequence; static-frequency learns on a training part of the sequences and is left out"))
        let rows = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
        #expect(rows.count == PolicyKind.allCases.count)
        #expect(!rows.contains { $0.contains(",static-frequency,") })
        let config = dir + "/only.yaml"
        try "trace: \(trace)\nmodel: mixtral-8x7b\nhardware: a100-80gb-pcie\nbudget: 25%\npolicies: [static-frequency]\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let alone = try moesim("compare", "--config", config, "--out", csv)
        #expect(alone.status != 0 && alone.stderr.contains("one has one sequence: no strategy left to run"), "\(alone.stderr)")
    }

    @Test func calibrateWritesAProfileThatReplayUses() throws {
        let dir = temporaryDirectory()
        let cal = try moesim("calibrate", "--scale", "16", "--tokens", "1,8", "--runs", "1", "--threads", "1",
                             "--out", dir + "/host.yaml")
        #expect(cal.status == 0, "\(cal.stderr)")
        #expect(cal.stdout.contains("host_flops") && cal.stdout.contains("1 OpenBLAS thread"))
        #expect(try moesim("trace", "gen", "--model", "mixtral-8x7b", "--tokens", "12", "--out", dir + "/t.jsonl").status == 0)
        let r = try moesim("replay", dir + "/t.jsonl", "--policy", "cpu-fallback", "--hardware", dir + "/host.yaml",
                           "--budget", "25%", "--numerics", "--numerics-scale", "64", "--numerics-csv", dir + "/n.csv",
                           "--out", dir + "/r.csv")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("a100-80gb-pcie+host") && r.stdout.contains("CPU computed"))
        let header = try String(contentsOfFile: dir + "/r.csv", encoding: .utf8).split(separator: "\n")[0]
        #expect(header.contains("cpu_experts,cpu_seconds,output_rel_error_mean"))
        let samples = try String(contentsOfFile: dir + "/n.csv", encoding: .utf8).split(separator: "\n")
        #expect(samples[0] == "step,seq,pos,layer,low_experts,cpu_experts,rel_error,cosine")
        #expect(samples.count > 1 && samples.dropFirst().allSatisfy { $0.hasSuffix(",0.0,1.0") })
        let bad = try moesim("replay", dir + "/t.jsonl", "--numerics-csv", dir + "/x.csv")
        #expect(bad.status != 0 && bad.stderr.contains("--numerics-csv needs --numerics"))
    }

    @Test func precisionTabulatesErrorAgainstBytes() throws {
        let dir = temporaryDirectory()
        #expect(try moesim("trace", "gen", "--model", "mixtral-8x7b", "--tokens", "16", "--out", dir + "/t.jsonl").status == 0)
        try AtomicFileSink.write("trace: t.jsonl\nmodel: mixtral-8x7b\nhardware: a100-80gb-pcie\nbudget: 25%\n", to: dir + "/c.yaml")
        let r = try moesim("precision", "--config", dir + "/c.yaml", "--bits", "4", "--thresholds", "0,2",
                           "--numerics-scale", "64", "--markdown", dir + "/p.md")
        #expect(r.status == 0, "\(r.stderr)")
        let rows = try String(contentsOfFile: dir + "/p.md", encoding: .utf8).split(separator: "\n").filter { $0.hasPrefix("| ") }
        #expect(rows.count == 4)  // header, lru, int4 at 0, int4 at 2
        let cells = rows.map { $0.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) } }
        #expect(cells[1][0] == "fp16 (lru)" && cells[1][4] == "1.000" && cells[1][6] == "0.0000")
        // Threshold 0 sends nothing to low precision: lru's bytes, no error. Above 1: everything, fewer bytes, some error.
        #expect(cells[2][1] == "0" && cells[2][4] == "1.000" && cells[2][5] == "0.0%" && cells[2][6] == "0.0000")
        #expect(cells[3][1] == "2" && cells[3][5] == "100.0%" && Double(cells[3][4])! < 1 && Double(cells[3][6])! > 0)
        let bad = try moesim("precision", "--config", dir + "/c.yaml", "--bits", "3")
        #expect(bad.status != 0 && bad.stderr.contains("low_bits"))
    }

    @Test func badInputExitsNonZeroWithAClearMessage() throws {
        let budget = try moesim("replay", "traces/golden-tiny.jsonl", "--model", "mixtral-8x7b", "--budget", "20x")
        #expect(budget.status != 0 && budget.stderr.contains("invalid budget '20x': unknown unit"))
        let shape = try moesim("replay", "traces/qwen3-synth.jsonl.gz", "--model", "mixtral-8x7b")
        #expect(shape.status != 0 && shape.stderr.contains("the trace has layers = 48 but model 'mixtral-8x7b' has 32"))
        let small = try moesim("replay", "traces/mixtral-synth.jsonl.gz", "--budget", "100MB")
        #expect(small.status != 0 && small.stderr.contains("is too small (it cannot hold one expert)"))
        let key = try moesim("replay", "traces/mixtral-synth.jsonl.gz", "--set", "hardware.link_byte_per_s=1e9")
        #expect(key.status != 0 && key.stderr.contains("unknown key 'hardware.link_byte_per_s'. Did you mean 'hardware.link_bytes_per_s'?"))
        let scope = try moesim("replay", "traces/mixtral-synth.jsonl.gz", "--policy", "on-demand", "--scope", "per-layer")
        #expect(scope.status != 0 && scope.stderr.contains("--scope per-layer applies to lru, fifo, lfu, arc, belady, prefetch-all, pregated"))
        let config = writeTemporary("trace: x.jsonl\nmodel: mixtral-8x7b\nhardware: t4\nbudgt: 25%\n", name: "c.yaml")
        let cfg = try moesim("compare", "--config", config)
        #expect(cfg.status != 0 && cfg.stderr.contains("\(config):4: unknown key 'budgt'. Did you mean 'budget'?"))
    }

    /// A short `moesim bench --filter FILTER` with a CSV: its stdout, and the CSV's rows named `case metric`, after
    /// checking that every row's median lies within its min and max.
    private func benchRows(filter: String) throws -> (stdout: String, rows: [String]) {
        let dir = temporaryDirectory()
        let r = try moesim("bench", "--runs", "2", "--accesses", "4096", "--filter", filter, "--csv", dir + "/b.csv")
        #expect(r.status == 0, "\(r.stderr)")
        let rows = try String(contentsOfFile: dir + "/b.csv", encoding: .utf8).split(separator: "\n").dropFirst()
            .map { $0.split(separator: ",").map(String.init) }
        for row in rows { #expect(Double(row[2])! > 0 && Double(row[3])! <= Double(row[2])! && Double(row[2])! <= Double(row[4])!) }
        return (r.stdout, rows.map { "\($0[0]) \($0[1])" })
    }

    @Test func benchMeasuresAPrefetcherBesideLRU() throws {
        let bench = try benchRows(filter: "pregated-mixtral")
        // The filter picked pregated; LRU, its baseline, is measured in the same rounds.
        #expect(bench.rows == ["lru-mixtral replay_accesses_per_s", "pregated-mixtral replay_accesses_per_s",
                               "pregated-mixtral time_vs_lru"])
        #expect(bench.stdout.contains("time / lru: median"))
    }

    @Test func benchTimesThePlanBesideLRUsReplay() throws {
        let bench = try benchRows(filter: "plan")
        #expect(bench.rows == ["plan-256x32-top8 plan_accesses_per_s", "plan-256x32-top8 plan_time_vs_lru_replay"])
        #expect(bench.stdout.contains("plan time / lru replay time: median"))
    }

    @Test func generatedTracesValidateAndMatchTheirSeed() throws {
        let dir = temporaryDirectory()
        for name in ["a.jsonl.gz", "b.jsonl.gz"] {
            let r = try moesim("trace", "gen", "--model", "olmoe-1b-7b", "--tokens", "50", "--seed", "4", "--out", dir + "/" + name)
            #expect(r.status == 0, "\(r.stderr)")
        }
        let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/a.jsonl.gz"))
        let b = try Data(contentsOf: URL(fileURLWithPath: dir + "/b.jsonl.gz"))
        #expect(a == b)
        let v = try moesim("trace", "validate", dir + "/a.jsonl.gz")
        #expect(v.stdout.contains("50 tokens, 16 layers, 64 experts, top-8"))
    }
}
