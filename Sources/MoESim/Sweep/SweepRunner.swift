import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs the cells of a sweep on several threads, journalling each finished row so that a killed sweep loses
/// nothing, and writes the final CSV sorted by cell, atomically.
///
///     let runner = SweepRunner(config: cfg, output: "reports/sweep.csv", jobs: 2)
///     try runner.run { done, total in … }
///
/// Finished rows go to `OUTPUT.partial`, one line per cell, each written with one `write` call and flushed. With
/// `resume`, the cells found there are skipped; the final file is the same bytes a clean run gives. With a shard
/// `i/n`, only cells whose index is `i-1` modulo `n` run; `SweepRunner.merge` joins shard files.
public struct SweepRunner: Sendable {
    public let config: SweepConfig
    public let output: String
    public let jobs: Int
    public let resume: Bool
    public let shard: (index: Int, count: Int)

    public init(config: SweepConfig, output: String, jobs: Int = 1, resume: Bool = false, shard: (Int, Int) = (1, 1)) {
        self.config = config; self.output = output; self.jobs = max(1, jobs); self.resume = resume; self.shard = shard
    }

    /// The sweep's columns: a group's columns when any cell of the grid (every shard's) uses it.
    func header(_ groups: ColumnGroups) -> [String] { ["cell"] + config.axes.map(\.key) + Metric.header(groups) }

    /// The column groups any cell of the grid uses: every row of the report has their columns.
    func gridColumnGroups() throws -> ColumnGroups { Self.groups(of: try config.cells()) }

    static func groups(of grid: [SweepConfig.Cell]) -> ColumnGroups {
        grid.reduce(into: ColumnGroups()) { $0.formUnion(ColumnGroups($1.spec)) }
    }
    var journalPath: String { Self.journalPath(for: output) }

    /// Where a sweep writing `output` keeps its journal.
    public static func journalPath(for output: String) -> String { output + ".partial" }

    /// What a run did: cells computed, and the seconds spent loading and checking (serial) and replaying (parallel).
    public struct Stats: Sendable {
        public let computed: Int
        public let setupSeconds: Double
        public let replaySeconds: Double
    }

    /// Runs the sweep; `progress(done, total)` is called after each cell (from worker threads, one at a time).
    /// - Throws: `ConfigError` for a config, trace or cell that cannot run, or a journal that cannot be trusted
    ///   (`SweepJournal`); in either case before any cell runs, leaving journal and output as they were.
    @discardableResult
    public func run(progress: @escaping @Sendable (Int, Int) -> Void = { _, _ in }) throws -> Stats {
        let clock = ContinuousClock(), started = clock.now
        let grid = try config.cells()
        let cells = grid.filter { $0.index % shard.count == shard.index - 1 }
        let groups = Self.groups(of: grid)
        if cells.isEmpty {
            throw ConfigError.invalidValue(field: "--shard", value: "\(shard.index)/\(shard.count)",
                                           expected: "a shard with at least one of the grid's cells")
        }
        let journal = try makeJournal(cells)
        var resumed: SweepJournal.Contents?
        if FileManager.default.fileExists(atPath: journalPath) {
            guard resume else {
                throw ConfigError.file(path: journalPath, line: nil, message: "an unfinished sweep left this journal; pass --resume to continue it, or delete it to start again")
            }
            resumed = try journal.read()
        }
        // Load each trace once, and check every cell before any replay starts.
        var plans: [String: (name: String, plan: StepPlan, trace: RoutingTrace)] = [:]
        for path in Set(cells.map(\.trace)).sorted() {
            let trace = try RoutingTrace.loadForReplay(path)
            let weights = cells.contains { $0.trace == path && $0.spec.policy.readsGateWeights }
            plans[path] = (trace.name, StepPlan(trace, weights: weights), trace)
        }
        let sequences = plans.mapValues(\.trace.sequenceCount)
        for cell in cells {
            do {
                let entry = plans[cell.trace]!
                try Replayer.check(trace: entry.trace, plan: entry.plan, spec: cell.spec, sequences: sequences[cell.trace])
            } catch let e as ConfigError {
                throw ConfigError.cell(settings: "\(describe(cell)), policy \(cell.spec.policy.rawValue) (cell \(cell.index))",
                                       reason: e.description)
            }
        }
        let done = resumed?.rows ?? [:]
        let todo = cells.filter { done[$0.index] == nil }
        let replayStarted = clock.now
        let state = SharedState(journal: journalPath, total: cells.count, alreadyDone: cells.count - todo.count)
        try state.open(journal, resumed: resumed)
        let plansSnapshot = plans
        DispatchQueue.concurrentPerform(iterations: min(jobs, max(1, todo.count))) { _ in
            while let cell = state.next(from: todo) {
                guard let entry = plansSnapshot[cell.trace] else { continue }
                do {
                    let result = try Replayer.replay(trace: entry.trace, plan: entry.plan, spec: cell.spec)
                    let line = journal.line(for: CSVFile.line(["\(cell.index)"] + cell.axisValues + Metric.row(result, groups)))
                    try state.finish(line, progress: progress)
                } catch {
                    state.fail(error)
                }
            }
        }
        state.close()
        let replayEnded = clock.now
        if let error = state.error { throw error }
        let rows = try journal.read().rows
        guard rows.count == cells.count else {
            throw ConfigError.file(path: journalPath, line: nil, message: "holds \(rows.count) of \(cells.count) cells after the run; run again with --resume")
        }
        try Self.writeSorted(rows, header: header(groups), to: output)
        try? FileManager.default.removeItem(atPath: journalPath)
        return Stats(computed: todo.count, setupSeconds: (replayStarted - started).seconds,
                     replaySeconds: (replayEnded - replayStarted).seconds)
    }

    /// What every row of this sweep depends on: the columns, the shard, every cell's settings and every trace's
    /// bytes. A journal written under another fingerprint is refused on `--resume`.
    func gridFingerprint(_ cells: [SweepConfig.Cell]) throws -> String {
        var f = Fingerprint()
        f.add(header(try gridColumnGroups()).joined(separator: ","))
        f.add("shard \(shard.index)/\(shard.count)")
        for cell in cells { f.add("\(cell.index) \(cell.trace) \(cell.axisValues) \(String(reflecting: cell.spec))") }
        for path in Set(cells.map(\.trace)).sorted() { try f.addFile(path) }
        return f.hex
    }

    /// The journal of this sweep's `cells`.
    func makeJournal(_ cells: [SweepConfig.Cell]) throws -> SweepJournal {
        SweepJournal(path: journalPath, grid: try gridFingerprint(cells), columns: header(try gridColumnGroups()).count,
                     settings: Dictionary(uniqueKeysWithValues: cells.map { ($0.index, settingColumns($0)) }))
    }

    /// The columns a cell's row must hold, by index: its number, its axis values, and the settings columns the grid
    /// gives it (trace, model, hardware, runtime, policy).
    func settingColumns(_ cell: SweepConfig.Cell) -> [Int: String] {
        var columns = [0: "\(cell.index)"]
        for (i, value) in cell.axisValues.enumerated() { columns[1 + i] = value }
        let first = 1 + cell.axisValues.count
        let spec = cell.spec
        for (metric, value) in [(Metric.trace, RoutingTrace.traceName(cell.trace)), (.model, spec.model.name),
                                (.hardware, spec.hardware.name), (.runtime, spec.runtime.name), (.policy, spec.policy.rawValue)] {
            columns[first + Metric.allCases.firstIndex(of: metric)!] = value
        }
        return columns
    }

    func describe(_ cell: SweepConfig.Cell) -> String {
        (["trace \(RoutingTrace.traceName(cell.trace))", "model \(cell.spec.model.name)", "hardware \(cell.spec.hardware.name)"]
            + zip(config.axes, cell.axisValues).map { "\($0.key) \($1)" }).joined(separator: ", ")
    }

    /// Joins shard files (same header, disjoint cells) into one CSV sorted by cell.
    /// - Throws: `ConfigError.file` naming the file and line of a row with other columns, no cell number, or a
    ///   cell that another input has too.
    public static func merge(_ inputs: [String], to output: String) throws {
        var header: [String]?
        var rows: [Int: String] = [:]
        for path in inputs {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigError.file(path: path, line: nil, message: "cannot read")
            }
            let records = try CSVFile.records([UInt8](data)[...], path: path)
            guard let first = records.first?.fields else { throw ConfigError.file(path: path, line: 1, message: "empty file") }
            if header == nil { header = first }
            guard first == header else { throw ConfigError.file(path: path, line: 1, message: "has other columns than \(inputs[0])") }
            for record in records.dropFirst() {
                guard record.fields.count == first.count else {
                    throw ConfigError.file(path: path, line: record.line, message: "a row of \(record.fields.count) fields; the header has \(first.count)")
                }
                guard let cell = Int(record.fields[0]) else {
                    throw ConfigError.file(path: path, line: record.line, message: "a row must start with its cell number")
                }
                if rows[cell] != nil { throw ConfigError.file(path: path, line: record.line, message: "cell \(cell) appears in two inputs") }
                rows[cell] = CSVFile.line(record.fields)
            }
        }
        guard let header else { throw ConfigError.invalidValue(field: "merge", value: "", expected: "at least one shard CSV") }
        try writeSorted(rows, header: header, to: output)
    }

    static func writeSorted(_ rows: [Int: String], header: [String], to path: String) throws {
        try CSVFile.ensureDirectory(for: path)
        let sink = try AtomicFileSink(path: path)
        try sink.write(CSVFile.line(header))
        for key in rows.keys.sorted() { try sink.write(rows[key]!) }
        try sink.commit()
    }
}

/// The work queue and journal shared by the sweep's threads, behind one lock.
private final class SharedState: @unchecked Sendable {
    private let lock = NSLock()
    private let journalPath: String
    private var fd: Int32 = -1
    private var cursor = 0
    private var done: Int
    let total: Int
    private(set) var error: Error?

    init(journal: String, total: Int, alreadyDone: Int) {
        journalPath = journal
        self.total = total
        done = alreadyDone
    }

    func open(_ journal: SweepJournal, resumed: SweepJournal.Contents?) throws { fd = try journal.openForAppending(resumed) }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    func next(from cells: [SweepConfig.Cell]) -> SweepConfig.Cell? {
        lock.lock(); defer { lock.unlock() }
        guard error == nil, cursor < cells.count else { return nil }
        cursor += 1
        return cells[cursor - 1]
    }

    func finish(_ line: String, progress: (Int, Int) -> Void) throws {
        lock.lock(); defer { lock.unlock() }
        try SweepJournal.write(line, to: fd, path: journalPath)
        done += 1
        progress(done, total)
    }

    func fail(_ e: Error) {
        lock.lock(); defer { lock.unlock() }
        if error == nil { error = e }
    }
}
