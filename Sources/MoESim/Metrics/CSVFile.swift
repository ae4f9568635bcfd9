import Foundation

/// CSV in RFC 4180 form, written atomically: rows are appended by rewriting the file beside it and renaming,
/// so a reader never sees half a row and a failed write leaves the old file.
///
///     try CSVFile.append(rows: [Metric.row(result)], header: Metric.header, to: "reports/runs.csv")
public enum CSVFile {
    /// Quotes a field when it holds a comma, quote or line break.
    public static func escape(_ field: String) -> String {
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    public static func line(_ fields: [String]) -> String { fields.map(escape).joined(separator: ",") + "\n" }

    /// Writes `header` and `rows` as the whole file.
    public static func write(rows: [[String]], header: [String], to path: String) throws {
        let sink = try AtomicFileSink(path: path)
        try sink.write(line(header))
        for row in rows { try sink.write(line(row)) }
        try sink.commit()
    }

    /// Appends rows, creating the file with `header` when absent.
    /// - Throws: `ConfigError.file` when the existing file's header differs (it is left untouched).
    public static func append(rows: [[String]], header: [String], to path: String) throws {
        var existing = ""
        if try OutputPath.kind(path) == .stream { return try write(rows: rows, header: header, to: path) }
        if FileManager.default.fileExists(atPath: path) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ConfigError.file(path: path, line: nil, message: "cannot read the existing CSV")
            }
            existing = text
            let firstLine = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            if !text.isEmpty && firstLine != line(header).dropLast() {
                throw ConfigError.file(path: path, line: 1, message: "has other columns than this report; write to a new file")
            }
            if !existing.isEmpty && !existing.hasSuffix("\n") { existing += "\n" }
        }
        let sink = try AtomicFileSink(path: path)
        try sink.write(existing.isEmpty ? line(header) : existing)
        for row in rows { try sink.write(line(row)) }
        try sink.commit()
    }

    /// One record of RFC 4180 CSV as read back: its fields, the line it starts on (1-based), its bytes (with the
    /// line break), and whether a line break ended it (the last record of a cut file has none).
    public struct Record {
        public let fields: [String]
        public let line: Int
        public let bytes: ArraySlice<UInt8>
        public let complete: Bool
    }

    /// Splits CSV bytes into records (quoted fields may hold commas, quotes and line breaks).
    /// - Parameter firstLine: the line number of the first byte (when the bytes follow other lines of a file).
    /// - Throws: `ConfigError.file` naming `path` and the line of a record that is not UTF-8.
    public static func records(_ bytes: ArraySlice<UInt8>, path: String, firstLine: Int = 1) throws -> [Record] {
        var records: [Record] = []
        var fields: [String] = [], field: [UInt8] = [], quoted = false
        var start = bytes.startIndex, line = firstLine, recordLine = firstLine
        func endField() throws {
            guard let text = String(validating: field, as: UTF8.self) else {
                throw ConfigError.file(path: path, line: recordLine, message: "not UTF-8 text")
            }
            fields.append(text)
            field.removeAll(keepingCapacity: true)
        }
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            if quoted {
                if b == UInt8(ascii: "\"") {
                    if i + 1 < bytes.endIndex && bytes[i + 1] == UInt8(ascii: "\"") { field.append(b); i += 1 } else { quoted = false }
                } else {
                    if b == UInt8(ascii: "\n") { line += 1 }
                    field.append(b)
                }
            } else if b == UInt8(ascii: "\"") {
                quoted = true
            } else if b == UInt8(ascii: ",") {
                try endField()
            } else if b == UInt8(ascii: "\n") {
                try endField()
                records.append(Record(fields: fields, line: recordLine, bytes: bytes[start...i], complete: true))
                fields = []
                start = i + 1
                line += 1
                recordLine = line
            } else if b != UInt8(ascii: "\r") {
                field.append(b)
            }
            i += 1
        }
        if start < bytes.endIndex {  // a last record without its line break
            if !quoted { try endField() }
            records.append(Record(fields: fields, line: recordLine, bytes: bytes[start...], complete: false))
        }
        return records
    }

    public static func ensureDirectory(for path: String) throws {
        let dir = FilePath.parent(of: path)
        guard !dir.isEmpty else { return }
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        catch { throw ConfigError.file(path: dir, line: nil, message: "cannot create directory: \(error.localizedDescription)") }
    }
}
