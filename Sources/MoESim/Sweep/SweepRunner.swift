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

    public var header: [String] { ["cell"] + config.axes.map(\.key) + Metric.header }
    var journal: String { output + ".partial" }

    /// What a run did: cells computed, and the seconds spent loading and checking (serial) and replaying (parallel).
    public struct Stats: Sendable {
        public let computed: Int
        public let setupSeconds: Double
        public let replaySeconds: Double
    }

    /// Runs the sweep; `progress(done, total)` is called after each cell (from worker threads, one at a time).
    @discardableResult
    public func run(progress: @escaping @Sendable (Int, Int) -> Void = { _, _ in }) throws -> Stats {
        let clock = ContinuousClock(), started = clock.now
        let cells = try config.cells().filter { $0.index % shard.count == shard.index - 1 }
        var done: [Int: String] = [:]
        if FileManager.default.fileExists(atPath: journal) {
            guard resume else {
                throw ConfigError.file(path: journal, line: nil, message: "an unfinished sweep left this journal; pass --resume to continue it, or delete it to start again")
            }
            done = try Self.readRows(journal, columns: header.count, keepPartialLastLine: false)
        }
        // Load each trace once, and check every cell before any replay starts.
        var plans: [String: (name: String, plan: StepPlan)] = [:]
        for path in Set(cells.map(\.trace)).sorted() {
            let trace = try RoutingTrace.load(path)
            plans[path] = (trace.name, StepPlan(trace))
        }
        for cell in cells {
            do { _ = try BudgetLayout(plan: plans[cell.trace]!.plan, spec: cell.spec) } catch let e as ConfigError {
                throw ConfigError.invalidValue(field: "cell \(cell.index) (\(describe(cell)))", value: cell.spec.policy.rawValue,
                                               expected: "a runnable cell: \(e.description)")
            }
        }
        let todo = cells.filter { done[$0.index] == nil }
        let replayStarted = clock.now
        let state = SharedState(journal: journal, total: cells.count, alreadyDone: cells.count - todo.count)
        try state.open()
        let plansSnapshot = plans
        DispatchQueue.concurrentPerform(iterations: min(jobs, max(1, todo.count))) { _ in
            while let cell = state.next(from: todo) {
                guard let entry = plansSnapshot[cell.trace] else { continue }
                do {
                    let result = try Replayer.run(plan: entry.plan, traceName: entry.name, spec: cell.spec)
                    let line = CSVFile.line(["\(cell.index)"] + cell.axisValues + Metric.row(result))
                    state.finish(line, progress: progress)
                } catch {
                    state.fail(error)
                }
            }
        }
        state.close()
        let replayEnded = clock.now
        if let error = state.error { throw error }
        let rows = try Self.readRows(journal, columns: header.count, keepPartialLastLine: false)
        let mine = Set(cells.map(\.index))
        try Self.writeSorted(rows.filter { mine.contains($0.key) }, header: header, to: output)
        try? FileManager.default.removeItem(atPath: journal)
        return Stats(computed: todo.count, setupSeconds: (replayStarted - started).seconds,
                     replaySeconds: (replayEnded - replayStarted).seconds)
    }

    func describe(_ cell: SweepConfig.Cell) -> String {
        (["trace \(RoutingTrace.traceName(cell.trace))", "model \(cell.spec.model.name)", "hardware \(cell.spec.hardware.name)"]
            + zip(config.axes, cell.axisValues).map { "\($0.key) \($1)" }).joined(separator: ", ")
    }

    /// Joins shard files (same header, disjoint cells) into one CSV sorted by cell.
    public static func merge(_ inputs: [String], to output: String) throws {
        var header: String?
        var rows: [Int: String] = [:]
        for path in inputs {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ConfigError.file(path: path, line: nil, message: "cannot read")
            }
            let lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
            guard let first = lines.first else { throw ConfigError.file(path: path, line: 1, message: "empty file") }
            if header == nil { header = first }
            guard first == header else { throw ConfigError.file(path: path, line: 1, message: "has other columns than \(inputs[0])") }
            for (n, line) in lines.dropFirst().enumerated() {
                guard let comma = line.firstIndex(of: ","), let cell = Int(line[..<comma]) else {
                    throw ConfigError.file(path: path, line: n + 2, message: "a row must start with its cell number")
                }
                if rows[cell] != nil { throw ConfigError.file(path: path, line: n + 2, message: "cell \(cell) appears in two inputs") }
                rows[cell] = line + "\n"
            }
        }
        let columns = header!.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        try writeSorted(rows, header: columns, to: output)
    }

    /// Rows of a sweep CSV or journal by cell; a last line without its newline (a write cut by a kill) is dropped.
    static func readRows(_ path: String, columns: Int, keepPartialLastLine: Bool) throws -> [Int: String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [:] }
        var rows: [Int: String] = [:]
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if !keepPartialLastLine { lines.removeLast() }  // after the final newline: empty, or a cut line
        for line in lines where !line.isEmpty {
            guard let comma = line.firstIndex(of: ","), let cell = Int(line[..<comma]) else { continue }
            rows[cell] = String(line) + "\n"
        }
        return rows
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
    private var file: UnsafeMutablePointer<FILE>?
    private var cursor = 0
    private var done: Int
    let total: Int
    private(set) var error: Error?

    init(journal: String, total: Int, alreadyDone: Int) {
        journalPath = journal
        self.total = total
        done = alreadyDone
    }

    func open() throws {
        try CSVFile.ensureDirectory(for: journalPath)
        guard let f = fopen(journalPath, "a") else {
            throw ConfigError.file(path: journalPath, line: nil, message: "cannot write: \(String(cString: strerror(errno)))")
        }
        file = f
    }

    func close() { if let f = file { fclose(f) }; file = nil }

    func next(from cells: [SweepConfig.Cell]) -> SweepConfig.Cell? {
        lock.lock(); defer { lock.unlock() }
        guard error == nil, cursor < cells.count else { return nil }
        cursor += 1
        return cells[cursor - 1]
    }

    func finish(_ line: String, progress: (Int, Int) -> Void) {
        lock.lock(); defer { lock.unlock() }
        var bytes = Array(line.utf8)
        _ = bytes.withUnsafeMutableBytes { write(fileno(file!), $0.baseAddress, $0.count) }
        done += 1
        progress(done, total)
    }

    func fail(_ e: Error) {
        lock.lock(); defer { lock.unlock() }
        if error == nil { error = e }
    }
}
