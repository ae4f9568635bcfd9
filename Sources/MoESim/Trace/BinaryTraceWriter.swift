/// Writes a `.moet` trace of a known number of tokens a block at a time, atomically: each block's slice of every
/// column goes to its place in the file (`BinaryTrace` describes the layout). A trace longer than memory converts in
/// two passes, one that counts its tokens and one that writes them (`RoutingTrace.convert`); a whole trace written
/// as one block is written in order, so it can go to a stream too.
final class BinaryTraceWriter {
    private let sink: AtomicFileSink
    private let header: TraceHeader
    private let tokens: Int
    private let hasWeights: Bool
    private let columns: BinaryTrace.Columns
    private var written = 0

    init(path: String, header: TraceHeader, tokens: Int, hasWeights: Bool) throws {
        #if _endian(big)
        #error("the binary trace writer assumes a little-endian host")
        #endif
        sink = try AtomicFileSink(path: path)
        self.header = header; self.tokens = tokens; self.hasWeights = hasWeights
        var head: [UInt8] = BinaryTrace.magic
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { head.append(contentsOf: $0) } }
        u32(Int(BinaryTrace.version)); u32(header.layers); u32(header.experts); u32(header.topK); u32(hasWeights ? 1 : 0)
        withUnsafeBytes(of: UInt64(tokens).littleEndian) { head.append(contentsOf: $0) }
        let json = Array(header.jsonLine().utf8)
        u32(json.count)
        head.append(contentsOf: json)
        try sink.write(bytes: head)
        columns = BinaryTrace.Columns(columnsStart: head.count, tokens: tokens, cells: header.layers * header.topK)
    }

    /// Writes the next `block.tokenCount` tokens.
    func append(_ block: RoutingTrace) throws {
        precondition(written + block.tokenCount <= tokens && (block.tokenCount == 0 || block.hasWeights == hasWeights),
                     "a block beyond the tokens declared, or with other columns")
        let t0 = written, cells = header.layers * header.topK
        func put<T>(_ column: [T], at start: Int, perToken: Int) throws {
            try column.withUnsafeBytes { try sink.write($0, at: start + t0 * perToken * MemoryLayout<T>.stride) }
        }
        try put(block.seq, at: columns.seq, perToken: 1)
        try put(block.pos, at: columns.pos, perToken: 1)
        try put(block.phase.map(\.rawValue), at: columns.phase, perToken: 1)
        try put(block.experts, at: columns.experts, perToken: cells)
        if hasWeights { try put(block.weights, at: columns.weights, perToken: cells) }
        written += block.tokenCount
    }

    /// Renames the file into place once every token declared is written.
    func commit() throws {
        precondition(written == tokens, "\(written) of \(tokens) tokens written")
        try sink.commit()
    }
}

extension RoutingTrace {
    /// Writes the tokens `produce` hands to its argument, in order, to `path` in the format its name says, a block at
    /// a time so that memory does not grow with the trace: JSON Lines in one call of `produce`, `.moet` in two (its
    /// header counts the tokens first; `produce` must hand out the same tokens each time). Returns the tokens written.
    public static func write(header: TraceHeader, to path: String,
                             produce: ((TokenRecord) throws -> Void) throws -> Void) throws -> Int {
        guard BinaryTrace.isBinary(path) else {
            let writer = try TraceWriter(path: path, header: header)
            var tokens = 0
            try produce { try writer.append($0); tokens += 1 }
            try writer.finish()
            return tokens
        }
        if try OutputPath.kind(path) == .stream {  // a stream cannot seek: the whole trace, written in order
            var trace = RoutingTrace(header: header, name: traceName(path))
            try produce { trace.append($0) }
            try BinaryTrace.write(trace, to: path)
            return trace.tokenCount
        }
        var tokens = 0, allWeighted = true
        try produce { record in
            if record.arrivalSeconds != nil || record.hasPredictions {
                throw ConfigError.file(path: path, line: nil, message: "the binary format does not hold \(record.hasPredictions ? "recorded predictions (pred)" : "arrival times (arrival_s)"); keep this trace as .jsonl")
            }
            tokens += 1
            allWeighted = allWeighted && record.hasWeights
        }
        let writer = try BinaryTraceWriter(path: path, header: header, tokens: tokens, hasWeights: allWeighted && tokens > 0)
        var block = RoutingTrace(header: header, name: traceName(path)), written = 0
        try produce { record in
            guard written < tokens else { throw ConfigError.file(path: path, line: nil, message: "the input gave more tokens on the second pass than on the first: write .jsonl, or convert from a file") }
            var record = record
            record.hasWeights = allWeighted
            block.append(record)
            written += 1
            if block.tokenCount == 1 << 16 {
                try writer.append(block)
                block = RoutingTrace(header: header, name: traceName(path))
            }
        }
        guard written == tokens else {
            throw ConfigError.file(path: path, line: nil, message: "the input gave \(written) tokens on the second pass but \(tokens) on the first: write .jsonl, or convert from a file")
        }
        try writer.append(block)
        try writer.commit()
        return tokens
    }

    /// Converts the trace at `input` to `output` (formats by the names' endings) a block at a time: a trace of any
    /// length converts in bounded memory. Returns its header and token count.
    public static func convert(_ input: String, to output: String) throws -> (header: TraceHeader, tokens: Int) {
        let header = try RoutingTrace.header(of: input)
        if try OutputPath.kind(input) == .stream {  // read once: a stream cannot be read again for a second pass
            let trace = try load(input)
            try trace.write(to: output)
            return (header, trace.tokenCount)
        }
        let tokens = try write(header: header, to: output) { consume in
            let reader = try BinaryTrace.records(input)
            var record = TokenRecord(layers: header.layers, topK: header.topK)
            while try reader.next(into: &record) { try consume(record) }
        }
        return (header, tokens)
    }
}
