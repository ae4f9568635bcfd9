import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The crash-safe record of a plan's replays (`OUT/plan.journal`), so that `moesim plan --resume` replays only what
/// a killed or earlier plan did not: a header line naming the inputs it belongs to, then one line per replay, each
/// written with one `write` call and ending in a check of its own bytes (as a sweep's journal, `SweepJournal`).
///
///     var journal = try PlanJournal(path: "reports/plan/plan.journal", inputs: fingerprint, resume: true)
///     journal.kept[key]            // a replay made before
///     try journal.record(key, replay)
///
/// A replay depends on the trace, the settings and moesim, not on the target: a resumed plan may ask for another
/// target or margin. Nothing is trusted unread: the inputs must match, every line's check must hold; a last line
/// cut by a kill is dropped.
public final class PlanJournal: @unchecked Sendable {
    /// A replay of a plan: which settings (`cell` of the `--vary` combinations), strategy and budget.
    public struct Key: Hashable, Sendable {
        public let cell: Int
        public let policy: PolicyKind
        public let experts: Int
    }

    /// What a plan keeps of a replay.
    public struct Replay: Sendable, Equatable {
        public let figure: Double?
        public let hitRate: Double?
        public let budgetBytes: Int
    }

    static let headerPrefix = "# moesim plan journal 1 inputs="
    public let path: String
    private let inputs: String
    public private(set) var kept: [Key: Replay] = [:]
    private let fd: Int32
    private let lock = NSLock()

    /// Opens the journal at `path` for plans over `inputs` (a fingerprint of everything a replay depends on):
    /// `resume` reads what it holds first; otherwise it starts empty.
    /// - Throws: `ConfigError.file` naming the journal and line for one of other inputs or damaged beyond a cut
    ///   last line.
    public init(path: String, inputs: String, resume: Bool) throws {
        self.path = path
        self.inputs = inputs
        var keep = 0
        if resume, let data = FileManager.default.contents(atPath: path) {
            (kept, keep) = try Self.read([UInt8](data), path: path, header: Self.headerPrefix + inputs + "\n")
        }
        try CSVFile.ensureDirectory(for: path)
        if resume && keep > 0 {
            guard truncate(path, off_t(keep)) == 0 else { throw Self.cannotWrite(path) }
        }
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | (resume && keep > 0 ? 0 : O_TRUNC), 0o644)
        guard fd >= 0 else { throw Self.cannotWrite(path) }
        if !(resume && keep > 0) { try write(Self.headerPrefix + inputs + "\n") }
    }

    deinit { close(fd) }

    /// Records a replay (from any of the plan's workers).
    public func record(_ key: Key, _ r: Replay) throws {
        let body = [String(key.cell), key.policy.rawValue, String(key.experts), r.figure.map { "\($0)" } ?? "",
                    r.hitRate.map { "\($0)" } ?? "", String(r.budgetBytes)].joined(separator: ",")
        lock.lock()
        defer { lock.unlock() }
        try write(body + "," + Self.check(inputs, body) + "\n")
    }

    private func write(_ text: String) throws {
        let bytes = Array(text.utf8)
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw Self.cannotWrite(path) }
    }

    private static func check(_ inputs: String, _ body: String) -> String {
        var f = Fingerprint()
        f.add(inputs)
        f.add(body)
        return f.hex
    }

    private static func cannotWrite(_ path: String) -> ConfigError {
        .file(path: path, line: nil, message: "cannot write the plan journal: \(String(cString: strerror(errno)))")
    }

    /// The replays a journal holds and the bytes up to its last whole line.
    static func read(_ bytes: [UInt8], path: String, header: String) throws -> ([Key: Replay], Int) {
        let advice = "delete it, or plan without --resume to start again"
        func fail(_ line: Int, _ why: String) -> ConfigError { .file(path: path, line: line, message: "\(why); \(advice)") }
        guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) else { return ([:], 0) }  // killed in the header
        guard String(decoding: bytes[...newline], as: UTF8.self) == header else {
            throw fail(1, "this journal belongs to other inputs: the trace, the settings or the moesim version changed since it was written")
        }
        let inputs = String(header.dropFirst(headerPrefix.count).dropLast())
        var kept: [Key: Replay] = [:], whole = newline + 1, lineNumber = 1, start = newline + 1
        while start < bytes.count {
            lineNumber += 1
            guard let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) else { break }  // cut by a kill: dropped
            let fields = String(decoding: bytes[start..<end], as: UTF8.self).split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 7, check(inputs, fields.dropLast().joined(separator: ",")) == fields[6],
                  let cell = Int(fields[0]), let policy = PolicyKind(rawValue: fields[1]), let experts = Int(fields[2]),
                  let budgetBytes = Int(fields[5]) else {
                throw fail(lineNumber, "the line is not a replay this plan wrote (edited, or damaged)")
            }
            kept[Key(cell: cell, policy: policy, experts: experts)] =
                Replay(figure: Double(fields[3]), hitRate: Double(fields[4]), budgetBytes: budgetBytes)
            whole = end + 1
            start = end + 1
        }
        return (kept, whole)
    }

    /// The fingerprint of a plan's inputs: moesim's version, the trace's bytes and every setting of each `--vary`
    /// combination (not the target, margin, memory limit or strategies: they choose among replays).
    public static func inputs(version: String, trace: String, cells: [ReplaySpec]) throws -> String {
        var f = Fingerprint()
        f.add(version)
        try f.addFile(trace)
        for spec in cells { f.add(String(reflecting: spec)) }
        return f.hex
    }
}
