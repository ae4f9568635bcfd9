import ArgumentParser
import Foundation
import MoESim
#if canImport(Glibc)
import Glibc
#endif

struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the grid of a sweep config (traces x models x hardware x axes x policies), one CSV row per cell.",
        discussion: """
            Cells run in parallel (--jobs). Each finished row is journalled in OUT.partial, so a killed sweep loses \
            nothing: run it again with --resume. The final CSV is sorted by cell and written atomically; it is the \
            same bytes however it was run. --shard i/n runs every n-th cell (for a batch system's job array); join \
            the shard files with `moesim merge`. Keys: docs/sweep.md.
            """)

    @Argument(help: "Sweep configuration (YAML).") var config: String
    @Option(help: "The CSV to write.") var out: String
    @Option(help: "Cells run at once (default: the machine's cores).") var jobs: Int = ProcessInfo.processInfo.activeProcessorCount
    @Flag(help: "Continue an interrupted sweep from OUT.partial.") var resume = false
    @Option(help: "Run only shard i of n (1-based), e.g. 2/4.") var shard: String = "1/1"

    func run() throws {
        let parts = shard.split(separator: "/").compactMap { Int($0) }
        guard parts.count == 2, parts[1] >= 1, (1...parts[1]).contains(parts[0]) else {
            throw ValidationError("--shard expects i/n with 1 <= i <= n, e.g. 2/4; got '\(shard)'")
        }
        if jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        let cfg = try SweepConfig.load(config)
        var files = FileRoles()
        for input in cfg.inputFiles { files.input(input == config ? "the config" : "a file the config reads", input) }
        files.output("--out", out)
        files.output("its journal", SweepRunner.journalPath(for: out))
        try files.check()
        let runner = SweepRunner(config: cfg, output: out, jobs: jobs, resume: resume, shard: (parts[0], parts[1]))
        let progress = Progress(interactive: isatty(STDERR_FILENO) == 1)
        let start = ContinuousClock.now
        let stats = try runner.run { done, total in progress.update(done, total, since: start) }
        progress.finish()
        print(String(format: "wrote %@: %d cells computed with %d jobs (%.2f s loading and checking, %.2f s replaying)",
                     out, stats.computed, jobs, stats.setupSeconds, stats.replaySeconds))
    }
}

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Join the CSVs of a sweep's shards into one, sorted by cell (the same bytes as an unsharded run).")

    @Argument(help: "Shard CSVs.") var inputs: [String]
    @Option(help: "The CSV to write.") var out: String

    func run() throws {
        try FileRoles.check(inputs: inputs.map { ("the shard CSV", $0) }, outputs: [("--out", out)])
        try SweepRunner.merge(inputs, to: out)
        print("wrote \(out)")
    }
}

/// A progress bar on a terminal, plain lines (about 20) otherwise.
final class Progress: @unchecked Sendable {
    let interactive: Bool
    private var lastLine = -1

    init(interactive: Bool) { self.interactive = interactive }

    func update(_ done: Int, _ total: Int, since start: ContinuousClock.Instant) {
        let seconds = (ContinuousClock.now - start).seconds
        let eta = done > 0 ? seconds / Double(done) * Double(total - done) : 0
        if interactive {
            let width = 30, filled = total > 0 ? width * done / total : width
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            FileHandle.standardError.write(Data(String(format: "\r[%@] %d/%d cells, ETA %.0f s ", bar, done, total, eta).utf8))
        } else {
            let step = max(1, total / 20)
            if done == total || done / step != lastLine {
                lastLine = done / step
                FileHandle.standardError.write(Data(String(format: "%d/%d cells done, ETA %.0f s\n", done, total, eta).utf8))
            }
        }
    }

    func finish() { if interactive { FileHandle.standardError.write(Data("\n".utf8)) } }
}
