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
        try ensureDirectory(for: path)
        let sink = try AtomicFileSink(path: path)
        try sink.write(line(header))
        for row in rows { try sink.write(line(row)) }
        try sink.commit()
    }

    /// Appends rows, creating the file with `header` when absent.
    /// - Throws: `ConfigError.file` when the existing file's header differs (it is left untouched).
    public static func append(rows: [[String]], header: [String], to path: String) throws {
        var existing = ""
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
        try ensureDirectory(for: path)
        let sink = try AtomicFileSink(path: path)
        try sink.write(existing.isEmpty ? line(header) : existing)
        for row in rows { try sink.write(line(row)) }
        try sink.commit()
    }

    public static func ensureDirectory(for path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        guard !dir.isEmpty else { return }
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        catch { throw ConfigError.file(path: dir, line: nil, message: "cannot create directory: \(error.localizedDescription)") }
    }
}
