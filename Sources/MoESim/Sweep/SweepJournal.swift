import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The crash-safe record of a sweep's finished cells (`OUT.partial`): a header line naming the grid it belongs to,
/// then one CSV row per finished cell, each written with one `write` call and ending in a check of its own bytes.
///
///     let journal = SweepJournal(path: "out.csv.partial", grid: fingerprint, columns: 80, settings: expected)
///     let kept = try journal.read()              // on --resume
///     let fd = try journal.openForAppending(kept)
///
/// Nothing in it is trusted unread: the grid must match (a changed config, trace or moesim version is refused),
/// every row must have the sweep's columns and a check (FNV-1a of the grid and the row) that matches, name a cell of
/// this grid and shard whose settings it carries, and appear once. The one damage a crash makes, a last line cut
/// short, is dropped; any other damage stops the resume with the line's number and leaves the journal and the
/// output as they are.
struct SweepJournal {
    static let format = 2
    static let headerPrefix = "# moesim sweep journal \(format) grid="

    let path: String
    /// Fingerprint of everything a row depends on (`SweepRunner.gridFingerprint`).
    let grid: String
    /// The sweep's columns (a journal row has one more: its check).
    let columns: Int
    /// Per cell of this grid and shard, the columns its row must hold (column index → value): its settings.
    let settings: [Int: [Int: String]]
    var cells: Dictionary<Int, [Int: String]>.Keys { settings.keys }

    /// The journal line for `row` (a CSV line of the sweep's columns, ending in a line break): the row and its check.
    func line(for row: String) -> String {
        let body = row.hasSuffix("\n") ? String(row.dropLast()) : row
        return body + "," + check(body) + "\n"
    }

    /// The check of a row's text (without its line break): FNV-1a 64 of the grid and the row.
    private func check(_ body: String) -> String {
        var f = Fingerprint()
        f.add(grid)
        f.add(body)
        return f.hex
    }

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
        if first.hasSuffix("\r") {
            throw fail(1, "its lines end in CR LF (Windows line ends), which moesim never writes: the journal was edited or copied as text")
        }
        guard first.hasPrefix(Self.headerPrefix) else {
            if first.hasPrefix("# moesim sweep journal ") {
                throw fail(1, "written by another moesim (journal format \(first.dropFirst("# moesim sweep journal ".count).prefix { $0 != " " }); this one writes \(Self.format))")
            }
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
            guard record.fields.count == columns + 1 else {
                throw fail(line, "a row of \(record.fields.count) fields; this sweep's journal rows have \(columns + 1) (its columns and a check)")
            }
            let row = CSVFile.line(Array(record.fields.dropLast()))
            guard check(String(row.dropLast())) == record.fields.last! else {
                throw fail(line, "the row does not match its check: it was edited, or written by another sweep")
            }
            guard let cell = Int(record.fields[0]), let expected = settings[cell] else {
                throw fail(line, "'\(record.fields[0])' is not a cell of this sweep")
            }
            for (column, value) in expected.sorted(by: { $0.key < $1.key }) where record.fields[column] != value {
                throw fail(line, "cell \(cell) of this sweep has \(value) where the row has \(record.fields[column])")
            }
            guard contents.rows[cell] == nil else { throw fail(line, "cell \(cell) appears twice") }
            contents.rows[cell] = row
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
