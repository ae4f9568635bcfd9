/// Errors in a routing trace. Each names the file, the line (1-based) and, where it can, the field.
public enum TraceError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, reason: String)
    case malformed(path: String, line: Int, field: String?, message: String)
    case truncatedGzip(path: String)
    case corruptGzip(path: String, reason: String)
    case empty(path: String)
    /// A header and nothing else: nothing to replay (whole or streamed).
    case noTokens(path: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason): return "\(path): cannot open: \(reason)"
        case let .malformed(path, line, field, message):
            return "\(path):\(line): \(field.map { "field '\($0)': " } ?? "")\(message)"
        case let .truncatedGzip(path): return "\(path): truncated gzip stream (the file ends before the compressed data does)"
        case let .corruptGzip(path, reason): return "\(path): corrupt gzip data: \(reason)"
        case let .empty(path): return "\(path): empty file: a trace starts with a header line"
        case let .noTokens(path): return "\(path): a header and no token lines: nothing to replay"
        }
    }
}
