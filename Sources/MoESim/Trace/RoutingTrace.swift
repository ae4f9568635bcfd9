#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A routing trace held compactly in memory: 2 bytes per routed id, 4 per weight, a few per token.
///
///     let trace = try RoutingTrace.load("traces/mixtral-synth.jsonl.gz")
///     trace.expertIDs(token: 0, layer: 3)   // the top-k ids, or nil when that cell is null
///
/// Invariant: `experts.count == tokenCount * layers * topK`; weights are empty or the same size.
public struct RoutingTrace: Sendable {
    public var header: TraceHeader
    public var name: String
    public private(set) var seq: [Int32] = []
    public private(set) var pos: [Int32] = []
    public private(set) var phase: [Phase] = []
    /// Layer-major ids per token, `TokenRecord.missing` in null cells.
    public private(set) var experts: [UInt16] = []
    /// Gate weights shaped like `experts` (NaN in null cells), or empty when the trace has none.
    public private(set) var weights: [Float] = []
    public private(set) var missingCells = 0
    /// Recorded predictions (`pred`), CSR over (token, layer): empty when no line has any.
    public private(set) var predictedStart: [Int32] = []
    public private(set) var predicted: [UInt16] = []
    /// `arrival_s` by the index of the sequence's first token; empty when no line has one.
    public private(set) var arrivalSeconds: [Int: Double] = [:]

    public init(header: TraceHeader, name: String) {
        self.header = header
        self.name = name
    }

    /// A trace from whole columns (the binary reader); the caller has checked them.
    init(header: TraceHeader, name: String, seq: [Int32], pos: [Int32], phase: [Phase], experts: [UInt16], weights: [Float]) {
        self.header = header
        self.name = name
        self.seq = seq; self.pos = pos; self.phase = phase; self.experts = experts; self.weights = weights
        let k = header.topK
        missingCells = stride(from: 0, to: experts.count, by: k).reduce(0) { $0 + (experts[$1] == TokenRecord.missing ? 1 : 0) }
    }

    public var tokenCount: Int { seq.count }
    public var hasWeights: Bool { !weights.isEmpty }
    /// Routed (token, layer, slot) entries that are recorded.
    public var recordedRoutings: Int { (tokenCount * header.layers - missingCells) * header.topK }

    /// Appends one token; the first token decides whether weights are kept.
    public mutating func append(_ record: TokenRecord) {
        let cells = header.layers * header.topK
        precondition(record.experts.count == cells, "record shaped for another trace")
        let keepWeights = record.hasWeights && (tokenCount == 0 || !weights.isEmpty)
        precondition(Limits.seq.contains(record.seq) && Limits.pos.contains(record.pos), "seq or pos outside Limits")
        if let t = record.arrivalSeconds { arrivalSeconds[tokenCount] = t }
        seq.append(Int32(record.seq))
        pos.append(Int32(record.pos))
        phase.append(record.phase)
        experts.append(contentsOf: record.experts)
        if keepWeights { weights.append(contentsOf: record.weights) }
        for l in 0..<header.layers where record.experts[l * header.topK] == TokenRecord.missing { missingCells += 1 }
        if record.hasPredictions && predictedStart.isEmpty {
            predictedStart = Array(repeating: 0, count: (tokenCount - 1) * header.layers + 1)  // earlier tokens: none
        }
        if !predictedStart.isEmpty {
            for l in 0..<header.layers {
                if record.hasPredictions {
                    let range = Int(record.predictedStart[l])..<Int(record.predictedStart[l + 1])
                    predicted.append(contentsOf: record.predicted[range])
                }
                predictedStart.append(Int32(predicted.count))
            }
        }
    }

    public var hasPredictions: Bool { !predictedStart.isEmpty }

    /// The recorded predictions for (token, layer); empty when none.
    public func predictedIDs(token: Int, layer: Int) -> ArraySlice<UInt16> {
        guard hasPredictions else { return [] }
        let i = token * header.layers + layer
        return predicted[Int(predictedStart[i])..<Int(predictedStart[i + 1])]
    }

    /// The ids routed at (token, layer), or nil for a null cell.
    public func expertIDs(token: Int, layer: Int) -> ArraySlice<UInt16>? {
        let base = (token * header.layers + layer) * header.topK
        return experts[base] == TokenRecord.missing ? nil : experts[base..<base + header.topK]
    }

    /// Reads a whole `.jsonl`, `.jsonl.gz` or binary `.moet` trace, validating every line or record.
    /// - Throws: `TraceError` naming the file, line and field.
    public static func load(_ path: String) throws -> RoutingTrace {
        if BinaryTrace.isBinary(path) { return try BinaryTrace.read(path) }
        return try load(try TraceReader(path: path))
    }

    /// `load`, for a replay: a trace of only a header has nothing to replay, and is refused as `--stream` refuses it.
    public static func loadForReplay(_ path: String) throws -> RoutingTrace {
        let trace = try load(path)
        if trace.tokenCount == 0 { throw TraceError.noTokens(path: path) }
        return trace
    }

    /// Reads a trace held in memory exactly as `load` reads the file `path` (its ending picks the format, and
    /// errors name it): for fuzzing and tests, and for traces that arrive by other means than a file.
    public static func load(bytes: [UInt8], path: String) throws -> RoutingTrace {
        if bytes.isEmpty { throw BinaryTrace.isBinary(path) ? TraceError.malformed(path: path, line: 1, field: nil, message: "the file ends early (truncated binary trace)") : TraceError.empty(path: path) }
        return try bytes.withUnsafeBytes { raw in
            // fmemopen only reads through the pointer ("rb"), and every read ends inside this closure.
            guard let file = fmemopen(UnsafeMutableRawPointer(mutating: raw.baseAddress!), raw.count, "rb") else {
                throw TraceError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
            }
            if BinaryTrace.isBinary(path) {
                defer { fclose(file) }
                return try BinaryTrace.read(file, path: path)
            }
            return try load(try TraceReader(source: try openByteSource(file, path: path), path: path))
        }
    }

    private static func load(_ reader: TraceReader) throws -> RoutingTrace {
        let path = reader.path
        var trace = RoutingTrace(header: reader.header, name: traceName(path))
        var record = TokenRecord(layers: reader.header.layers, topK: reader.header.topK)
        let cells = reader.header.layers * reader.header.topK
        while try reader.next(into: &record) {
            if (trace.tokenCount + 1) * cells > Limits.routedIDs {
                throw TraceError.malformed(path: path, line: reader.lineNumber, field: nil,
                                           message: "more than \(Limits.routedIDs) routed ids: too long to hold whole; replay it with --stream")
            }
            trace.append(record)
        }
        return trace
    }

    /// Fills `record` with token `t` (the inverse of `append`).
    public func record(_ t: Int, into record: inout TokenRecord) {
        let cells = header.layers * header.topK
        record.seq = Int(seq[t]); record.pos = Int(pos[t]); record.phase = phase[t]
        record.arrivalSeconds = arrivalSeconds[t]
        for i in 0..<cells { record.experts[i] = experts[t * cells + i] }
        record.hasWeights = hasWeights
        if hasWeights { for i in 0..<cells { record.weights[i] = weights[t * cells + i] } }
        record.hasPredictions = hasPredictions
        if hasPredictions {
            record.predicted.removeAll(keepingCapacity: true)
            for l in 0..<header.layers {
                record.predicted.append(contentsOf: predictedIDs(token: t, layer: l))
                record.predictedStart[l + 1] = Int32(record.predicted.count)
            }
        }
    }

    /// Writes the trace as `.jsonl`, `.jsonl.gz` or binary `.moet`, by the name's ending; atomically.
    public func write(to path: String) throws {
        if BinaryTrace.isBinary(path) { return try BinaryTrace.write(self, to: path) }
        let writer = try TraceWriter(path: path, header: header)
        var r = TokenRecord(layers: header.layers, topK: header.topK)
        for t in 0..<tokenCount {
            record(t, into: &r)
            try writer.append(r)
        }
        try writer.finish()
    }

    /// The file name without directories and trace extensions: the `trace` column of reports.
    public static func traceName(_ path: String) -> String {
        var name = path.split(separator: "/").last.map(String.init) ?? path
        for suffix in [".gz", ".jsonl", ".moet"] where name.hasSuffix(suffix) { name.removeLast(suffix.count) }
        return name
    }
}
