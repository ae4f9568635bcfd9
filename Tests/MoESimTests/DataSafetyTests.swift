import Foundation
import Testing
@testable import MoESim

/// Nothing a user wrote is lost: a damaged sweep journal stops `--resume` with the line and leaves every file as it
/// was; outputs that are devices are written, not replaced; a command that fails writes no partial result.
@Suite struct DataSafetyTests {
    /// A sweep of 24 small cells, its clean output and the journal a run leaves when stopped after `rows` cells.
    struct Damage {
        let dir = temporaryDirectory()
        let config: SweepConfig
        var output: String { dir + "/s.csv" }
        var journal: String { output + ".partial" }

        init() throws { config = try SweepConfig.parse(SweepTests.yaml, path: "s.yaml") }

        /// The clean output's bytes, and a journal holding the header and the first `rows` rows of a clean run.
        func journalAfter(rows: Int) throws -> (clean: [UInt8], journal: [UInt8]) {
            let clean = dir + "/clean.csv"
            try SweepRunner(config: config, output: clean, jobs: 1).run()
            let cleanBytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: clean)))
            let lines = cleanBytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            let book = try journalOf(config)
            var journal = Array((SweepJournal.headerPrefix + book.grid + "\n").utf8)
            for line in lines[1...rows] { journal += Array(book.line(for: String(decoding: line, as: UTF8.self) + "\n").utf8) }
            return (cleanBytes, journal)
        }

        /// The journal a sweep of `config` writing `output` keeps (its grid, and the check of a row).
        func journalOf(_ config: SweepConfig) throws -> SweepJournal {
            try SweepRunner(config: config, output: output, jobs: 1).makeJournal(try config.cells())
        }

        func resume() throws { try SweepRunner(config: config, output: output, jobs: 2, resume: true).run() }

        func write(_ bytes: [UInt8], to path: String) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }
        func bytes(_ path: String) -> [UInt8]? { FileManager.default.contents(atPath: path).map { [UInt8]($0) } }
    }

    @Test func aCutLastLineIsDroppedAndTheResumeIsByteIdentical() throws {
        let d = try Damage()
        let (clean, journal) = try d.journalAfter(rows: 5)
        // The sixth row, cut halfway: a kill during its write.
        let sixth = clean.split(separator: UInt8(ascii: "\n"))[6]
        try d.write(journal + sixth.prefix(sixth.count / 2), to: d.journal)
        try d.resume()
        #expect(d.bytes(d.output) == clean)
        #expect(!FileManager.default.fileExists(atPath: d.journal))
    }

    @Test func damageAnywhereElseStopsTheResumeAndChangesNothing() throws {
        let d = try Damage()
        let (_, journal) = try d.journalAfter(rows: 6)
        let lines = journal.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map(Array.init)
        let oldOutput = Array("an earlier output\n".utf8)
        func rejoin(_ ls: [[UInt8]]) -> [UInt8] { Array(ls.joined(separator: [UInt8(ascii: "\n")])) }
        var badByte = lines
        badByte[3][5] = 0xFF
        var short = lines
        short[4] = Array(short[4].prefix(20))
        var twice = lines
        twice.insert(lines[2], at: 5)
        let book = try d.journalOf(d.config)
        /// Line `i` of the journal with its fields changed by `change`, its check made anew (so that only the
        /// settings check can refuse it) or kept (so that the row check must).
        func edited(_ i: Int, recheck: Bool, _ change: (inout [String]) -> Void) throws -> [[UInt8]] {
            var fields = try CSVFile.records(lines[i][...], path: "j", firstLine: 1)[0].fields
            let check = fields.removeLast()
            change(&fields)
            var copy = lines
            let row = CSVFile.line(fields)
            copy[i] = Array((recheck ? book.line(for: row) : String(row.dropLast()) + "," + check + "\n").utf8.dropLast())
            return copy
        }
        let policyColumn = 1 + d.config.axes.count + Metric.allCases.firstIndex(of: .policy)!
        let hitsColumn = 1 + d.config.axes.count + Metric.allCases.firstIndex(of: .hits)!
        let foreign = try edited(2, recheck: true) { $0[0] = "999" }
        let otherPolicy = try edited(3, recheck: true) { $0[policyColumn] = $0[policyColumn] == "lru" ? "fifo" : "lru" }
        let editedDigit = try edited(4, recheck: false) { $0[hitsColumn] += "1" }
        let fromAnotherSweep = try edited(5, recheck: false) { _ in }.enumerated().map { i, line in
            i == 5 ? Array(line.prefix(line.count - 16)) + Array("0123456789abcdef".utf8) : line
        }
        let windows = lines.map { $0.isEmpty ? $0 : $0 + [UInt8(ascii: "\r")] }
        var otherGrid = lines
        otherGrid[0] = Array((SweepJournal.headerPrefix + "0123456789abcdef").utf8)
        let cases: [([UInt8], String)] = [
            (rejoin(badByte), ":4: not UTF-8 text"),
            (rejoin(short), ":5: a row of"),
            (rejoin(twice), ":6: cell 1 appears twice"),
            (rejoin(foreign), ":3: '999' is not a cell of this sweep"),
            (rejoin(otherPolicy), ":4: cell 2 of this sweep has"),
            (rejoin(editedDigit), ":5: the row does not match its check"),
            (rejoin(fromAnotherSweep), ":6: the row does not match its check"),
            (rejoin(windows), ":1: its lines end in CR LF"),
            (Array("# moesim sweep journal 1 grid=0123\n".utf8), ":1: written by another moesim (journal format 1"),
            (rejoin(otherGrid), ":1: this journal belongs to another grid"),
            (Array("cell,budget\n0,1\n".utf8), ":1: not a moesim sweep journal"),
        ]
        for (damaged, fragment) in cases {
            try d.write(damaged, to: d.journal)
            try d.write(oldOutput, to: d.output)
            #expect { try d.resume() } throws: { "\($0)".contains(d.journal + fragment) && "\($0)".contains("left as they are") }
            #expect(d.bytes(d.journal) == damaged, "the journal is untouched (\(fragment))")
            #expect(d.bytes(d.output) == oldOutput, "the output is untouched (\(fragment))")
        }
    }

    @Test func aJournalOfAChangedConfigOrTraceIsRefused() throws {
        let d = try Damage()
        let (_, journal) = try d.journalAfter(rows: 3)
        try d.write(journal, to: d.journal)
        // One more budget: another grid.
        let changed = try SweepConfig.parse(SweepTests.yaml.replacingOccurrences(of: "6experts]", with: "6experts, 8experts]"), path: "s.yaml")
        #expect { try SweepRunner(config: changed, output: d.output, jobs: 1, resume: true).run() } throws: {
            "\($0)".contains("belongs to another grid")
        }
        // The same config over a trace whose bytes changed: another grid too.
        let tracePath = d.dir + "/t.jsonl"
        try FileManager.default.copyItem(atPath: packageRoot + "/traces/golden-tiny.jsonl", toPath: tracePath)
        let local = try SweepConfig.parse(SweepTests.yaml.replacingOccurrences(of: "\(packageRoot)/traces/golden-tiny.jsonl", with: tracePath), path: "s.yaml")
        let out = d.dir + "/local.csv"
        let fingerprint = try SweepRunner(config: local, output: out, jobs: 1).gridFingerprint(try local.cells())
        try d.write(Array((SweepJournal.headerPrefix + fingerprint + "\n").utf8), to: out + ".partial")
        let handle = try #require(FileHandle(forWritingAtPath: tracePath))
        handle.seekToEndOfFile()
        handle.write(Data("\n".utf8))
        handle.closeFile()
        #expect { try SweepRunner(config: local, output: out, jobs: 1, resume: true).run() } throws: { "\($0)".contains("another grid") }
        try d.write([UInt8](try Data(contentsOf: URL(fileURLWithPath: packageRoot + "/traces/golden-tiny.jsonl"))), to: tracePath)
        try SweepRunner(config: local, output: out, jobs: 1, resume: true).run()
    }

    /// SIGKILL at chosen points of a sweep's progress, twice a trial (in the first run and in the resumed one), then a
    /// resume to the end: the output is byte-identical to an uninterrupted run, and no journal is left. The points are
    /// counts of journal rows (0 to 16 of 18 cells), watched on the file rather than timed, so a loaded machine only
    /// waits longer; a kill that misses a run (it ended first) is counted, and most must land.
    @Test func kill9AtChosenPointsThenResumeIsByteIdentical() throws {
        let binary = try #require(CLITests.binary)
        let dir = temporaryDirectory()
        let config = dir + "/s.yaml"
        try """
            traces: [\(packageRoot)/traces/mixtral-synth.jsonl.gz]
            models: [mixtral-8x7b]
            hardware: [a100-80gb-pcie]
            policies: [lru, belady, pregated]
            axes:
              budget: [5%, 10%, 20%, 30%, 50%, 75%]
            """.write(toFile: config, atomically: true, encoding: .utf8)
        func sweep(_ out: String, resume: Bool) throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: binary)
            p.arguments = ["sweep", config, "--out", out, "--jobs", "2"] + (resume ? ["--resume"] : [])
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            return p
        }
        /// Waits until the journal holds `rows` rows (after its header) or `p` has exited.
        func waitForJournal(_ path: String, rows: Int, of p: Process) {
            while p.isRunning {
                let lines = (try? Data(contentsOf: URL(fileURLWithPath: path)))?.filter { $0 == UInt8(ascii: "\n") }.count ?? -1
                if lines > rows { return }
                usleep(500)
            }
        }
        let clean = try sweep(dir + "/clean.csv", resume: false)
        clean.waitUntilExit()
        let cleanBytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/clean.csv"))
        var landed = 0, kills = 0
        for (trial, first) in stride(from: 0, through: 16, by: 2).enumerated() {
            let out = dir + "/t\(trial).csv"
            for (attempt, rows) in [first, first + 1].enumerated() {
                if attempt == 1 && FileManager.default.fileExists(atPath: out + ".partial") {
                    let refused = try sweep(out, resume: false)
                    refused.waitUntilExit()
                    #expect(refused.terminationStatus != 0, "without --resume an unfinished journal is refused")
                }
                let p = try sweep(out, resume: attempt > 0)
                waitForJournal(out + ".partial", rows: rows, of: p)
                kills += 1
                if p.isRunning { landed += 1 }
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
            }
            let last = try sweep(out, resume: FileManager.default.fileExists(atPath: out + ".partial"))
            last.waitUntilExit()
            #expect(last.terminationStatus == 0, "trial \(trial): the last resume")
            #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == cleanBytes, "trial \(trial)")
            #expect(!FileManager.default.fileExists(atPath: out + ".partial"))
        }
        #expect(landed * 4 >= kills * 3, "\(landed) of \(kills) kills landed while a sweep ran")
    }

    @Test func devicesAreWrittenNotReplaced() throws {
        // A character device like /dev/full in a folder of our own (mknod needs root; elsewhere /dev/null serves).
        let dir = temporaryDirectory()
        let full = dir + "/full"
        let haveFull = mknod(full, S_IFCHR | 0o666, 0x107) == 0  // major 1, minor 7: /dev/full
        let cli = CLITests()
        if haveFull {
            for args in [["trace", "convert", "traces/golden-tiny.jsonl", full],
                         ["compare", "--config", "configs/default.yaml", "--out", full, "--budgets", "25%"],
                         ["sweep", writeSweep(dir), "--out", full]] {
                let r = try cli.moesim(args)
                #expect(r.status != 0 && r.stderr.contains("No space left on device"), "\(args[0]): \(r.stderr)")
                var info = stat()
                #expect(stat(full, &info) == 0 && info.st_mode & S_IFMT == S_IFCHR, "\(args[0]) left the device in place")
            }
        } else {
            print("note: mknod is not permitted here; the /dev/full cases are skipped, /dev/null still runs")
        }
        let r = try cli.moesim(["trace", "convert", "traces/golden-tiny.jsonl", "/dev/null"])
        var info = stat()
        #expect(r.status == 0 && stat("/dev/null", &info) == 0 && info.st_mode & S_IFMT == S_IFCHR)
        let folder = try cli.moesim(["trace", "convert", "traces/golden-tiny.jsonl", dir])
        #expect(folder.status != 0 && folder.stderr.contains("is a directory"))
    }

    func writeSweep(_ dir: String) -> String {
        let path = dir + "/tiny.yaml"
        try! SweepTests.yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func aFailedReplayAppendsNoRow() throws {
        let dir = temporaryDirectory()
        let out = dir + "/r.csv"
        let cli = CLITests()
        let notAFolder = writeTemporary("a file", name: "file.txt")
        let r = try cli.moesim(["replay", "traces/mixtral-synth.jsonl.gz", "--out", out, "--per-token", notAFolder + "/y.csv"])
        #expect(r.status != 0 && r.stderr.contains(notAFolder + "/y.csv"))
        #expect(!FileManager.default.fileExists(atPath: out), "no row for a run whose other outputs failed")
        let stream = try cli.moesim(["replay", "traces/mixtral-synth.jsonl.gz", "--stream", "--numerics-csv", dir + "/n.csv"])
        #expect(stream.status != 0 && stream.stderr.contains("--numerics-csv needs --numerics"))
        let empty = try cli.moesim(["compare", "--budgets", "", "--out", dir + "/c.csv"])
        #expect(empty.status != 0 && empty.stderr.contains("--budgets is empty"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/c.csv"))
    }

    @Test func perLayerBoundsRunPerLayer() throws {
        // Belady under cache_scope per-layer evicts within each layer's share: it bounds per-layer LRU from above
        // and is bounded by global Belady (one cache of the same size can do everything four can), and its row
        // says per-layer; on-demand keeps no cache and says none.
        var strictlyBelowGlobal = 0
        for seed in propertySeeds(8) {
            let trace = zipfTrace(seed: seed, layers: 4, experts: 16, topK: 2, tokens: 300, prefill: 1)
            let model = tinyModel(layers: 4, experts: 16, topK: 2)
            for n in [8, 16, 32] {
                let lru = try replay(trace, model: model, policy: .lru, budget: .experts(n), scope: .perLayer)
                let opt = try replay(trace, model: model, policy: .belady, budget: .experts(n), scope: .perLayer)
                let global = try replay(trace, model: model, policy: .belady, budget: .experts(n))
                #expect(lru.counters.hits <= opt.counters.hits && opt.counters.hits <= global.counters.hits, "seed \(seed), \(n) experts")
                if opt.counters.hits < global.counters.hits { strictlyBelowGlobal += 1 }
                #expect(Metric.cacheScope.cell(opt) == "per-layer")
                let none = try replay(trace, model: model, policy: .onDemand, budget: .experts(n), scope: .perLayer)
                #expect(Metric.cacheScope.cell(none) == "none")
            }
        }
        #expect(strictlyBelowGlobal > 0, "the per-layer bound is not the global one")
    }
}
