import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The crash-safe record of a sweep's finished cells (`OUT.partial`): a header line naming the grid it belongs to,
/// then one CSV row per finished cell, each written with one `write` call.
///
///     let journal = SweepJournal(path: "out.csv.partial", grid: fingerprint, columns: 80, cells: [0, 1, 2])
///     let kept = try journal.read()              // on --resume
///     let fd = try journal.openForAppending(kept)
///
/// Nothing in it is trusted unread: the grid must match (a changed config, trace or moesim version is refused),
/// every row must have the sweep's columns, a cell of this grid and shard, and appear once. The one damage a crash
/// makes, a last line cut short, is dropped; any other damage stops the resume with the line's number and leaves
/// the journal and the output as they are.
struct SweepJournal {
    static let headerPrefix = "# moesim sweep journal 1 grid="

    let path: String
    /// Fingerprint of everything a row depends on (`SweepRunner.gridFingerprint`).
    let grid: String
    let columns: Int
    let cells: Set<Int>

    /// What a journal holds: the rows by cell (each with its line break), and the bytes up to the end of the
    /// last whole line (a cut line after them is dropped on reopening).
    struct Contents {
        var rows: [Int: String] = [:]
        var wholeBytes = 0
    }

    private var headerLine: String { Self.headerPrefix + grid + "\n" }

    /// Reads and checks the journal.
    /// - Throws: `ConfigError.file` naming the journal and line: another grid, a row with other columns, a cell
    ///   outside this grid or shard, a cell twice, bytes that are not UTF-8.
    func read() throws -> Contents {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError.file(path: path, line: nil, message: "cannot read the sweep journal")
        }
        let bytes = [UInt8](data)
        let advice = "the journal and the output are left as they are; delete the journal to start the sweep again"
        func fail(_ line: Int, _ why: String) -> ConfigError { .file(path: path, line: line, message: "\(why); \(advice)") }
        var contents = Contents()
        guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) else {
            // Killed while the header line was written: nothing to keep.
            if headerLine.utf8.starts(with: bytes) { return contents }
            throw fail(1, "not a moesim sweep journal (its first line is not '\(Self.headerPrefix)…')")
        }
        let first = String(decoding: bytes[..<newline], as: UTF8.self)
        guard first.hasPrefix(Self.headerPrefix) else {
            throw fail(1, "not a moesim sweep journal (its first line is not '\(Self.headerPrefix)…')")
        }
        guard first + "\n" == headerLine else {
            throw fail(1, "this journal belongs to another grid: the config, a trace, the shard or the moesim version changed since it was written")
        }
        contents.wholeBytes = newline + 1
        let records: [CSVFile.Record]
        do { records = try CSVFile.records(bytes[(newline + 1)...], path: path, firstLine: 2) } catch let e as ConfigError {
            guard case let .file(_, line, message) = e else { throw e }
            throw fail(line ?? 0, message)
        }
        for record in records {
            let line = record.line
            guard record.complete else { break }  // the last line, cut by a kill: dropped
            guard record.fields.count == columns else {
                throw fail(line, "a row of \(record.fields.count) fields; this sweep's rows have \(columns)")
            }
            guard let cell = Int(record.fields[0]), cells.contains(cell) else {
                throw fail(line, "'\(record.fields[0])' is not a cell of this sweep")
            }
            guard contents.rows[cell] == nil else { throw fail(line, "cell \(cell) appears twice") }
            contents.rows[cell] = String(decoding: record.bytes, as: UTF8.self)
            contents.wholeBytes += record.bytes.count
        }
        return contents
    }

    /// Opens the journal for appending rows: a new one gets its header line; a resumed one is first cut back to
    /// its last whole line, so that a row cut by a kill is not joined to the next.
    /// - Returns: a file descriptor opened with `O_APPEND`.
    func openForAppending(_ resumed: Contents?) throws -> Int32 {
        try CSVFile.ensureDirectory(for: path)
        if let resumed {
            if truncate(path, off_t(resumed.wholeBytes)) != 0 { throw cannotWrite() }
        }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | (resumed == nil ? O_TRUNC : 0), 0o644)
        guard fd >= 0 else { throw cannotWrite() }
        if resumed == nil || resumed!.wholeBytes == 0 {
            do { try Self.write(headerLine, to: fd, path: path) } catch { close(fd); throw error }
        }
        return fd
    }

    /// Writes `text` with one `write` call (a kill can cut it short, never interleave it with another row).
    static func write(_ text: String, to fd: Int32, path: String) throws {
        var bytes = Array(text.utf8)
        let written = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if written != bytes.count {
            throw ConfigError.file(path: path, line: nil, message: "cannot write: \(String(cString: strerror(errno)))")
        }
    }

    private func cannotWrite() -> ConfigError {
        .file(path: path, line: nil, message: "cannot write: \(String(cString: strerror(errno)))")
    }
}

/// FNV-1a, 64 bits: a fingerprint of text and files that is the same on every run and machine (Swift's `Hasher`
/// is seeded per process).
struct Fingerprint {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        for b in bytes { value = (value ^ UInt64(b)) &* 0x100_0000_01b3 }
    }

    mutating func add(_ text: String) {
        add(text.utf8)
        add(CollectionOfOne(0))  // a separator, so that "ab"+"c" differs from "a"+"bc"
    }

    /// Adds a file's bytes, read in chunks.
    mutating func addFile(_ path: String) throws {
        guard let file = fopen(path, "rb") else {
            throw TraceError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        defer { fclose(file) }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            if n == 0 { break }
            add(buffer[..<n])
        }
    }

    var hex: String { String(value, radix: 16).leftPadded(to: 16) }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
