/// A `.jsonl`, `.jsonl.gz` or `.moet` trace read as consecutive chunks of whole steps, for replay in bounded memory.
///
///     var chunks = try TraceChunks(path: "big.jsonl.gz", tokens: 65_536)
///     while let (chunk, previousSeq) = try chunks.next() { … StepPlan(chunk, previousSeq: previousSeq) … }
///
/// A chunk ends after at least `tokens` tokens, never inside a sequence's run of prefill tokens (one step), so the
/// chunks' step plans are the whole trace's, cut between steps. A `.moet` file is read a block of
/// tokens at a time (`BinaryTraceReader`).
public struct TraceChunks {
    private let reader: TokenRecordReader
    private let name: String
    private let tokens: Int
    /// The record read past the end of the previous chunk: the first of the next one.
    private var carried: TokenRecord?
    private var record: TokenRecord
    private var previousSeq: Int32?

    public init(path: String, tokens: Int) throws {
        reader = try BinaryTrace.records(path)
        name = RoutingTrace.traceName(path)
        self.tokens = max(1, tokens)
        record = TokenRecord(layers: reader.header.layers, topK: reader.header.topK)
    }

    public var header: TraceHeader { reader.header }

    /// The next chunk and the sequence of the token before it (nil for the first), or nil at the end.
    /// - Throws: `TraceError` for the first bad line, as `RoutingTrace.load` would.
    public mutating func next() throws -> (RoutingTrace, Int32?)? {
        var chunk = RoutingTrace(header: reader.header, name: name)
        if let first = carried { chunk.append(first); carried = nil }
        while try reader.next(into: &record) {
            let last = chunk.tokenCount - 1
            let continuesStep = last >= 0 && record.phase == .prefill && chunk.phase[last] == .prefill
                && Int(chunk.seq[last]) == record.seq
            if chunk.tokenCount >= tokens && !continuesStep {
                carried = record
                break
            }
            chunk.append(record)
        }
        guard chunk.tokenCount > 0 else { return nil }
        defer { previousSeq = chunk.seq.last }
        return (chunk, previousSeq)
    }
}
