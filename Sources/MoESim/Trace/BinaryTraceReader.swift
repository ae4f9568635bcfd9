#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A `.moet` file read a run of tokens at a time (`BinaryTrace` describes the layout): whole for `RoutingTrace.load`,
/// a block at a time for `--stream`, so that a trace of more routed ids than memory holds still replays.
///
/// Opening reads and checks the fixed and JSON headers, and the file's size against the shape they declare, before
/// anything else is allocated, so a damaged header cannot ask for absurd memory. Each block is read from the
/// columns' offsets and checked as the JSON reader checks lines, the sequence order carried from block to block.
final class BinaryTraceReader: TokenRecordReader {
    let path: String
    let header: TraceHeader
    /// Tokens in the file, and routed ids (tokens × layers × top-k).
    let tokens: Int
    let routedIDs: Int
    let hasWeights: Bool
    private let file: UnsafeMutablePointer<FILE>
    private let ownsFile: Bool
    private let columnsStart: Int
    private var order = SequenceOrder()
    /// The file's index of the next token to read.
    private(set) var nextToken = 0
    /// `next(into:)`'s current block and its next token.
    private var block: RoutingTrace?
    private var inBlock = 0
    private let blockTokens: Int

    /// `blockTokens`: tokens that `next(into:)` reads at a time.
    convenience init(path: String, blockTokens: Int = 4096) throws {
        guard let file = fopen(path, "rb") else {
            throw TraceError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        try self.init(file: file, path: path, owns: true, blockTokens: blockTokens)
    }

    /// Reads from `file`, which the caller keeps open and closes (`owns` false).
    init(file: UnsafeMutablePointer<FILE>, path: String, owns: Bool = false, blockTokens: Int = 4096) throws {
        self.file = file; self.path = path; ownsFile = owns; self.blockTokens = max(1, blockTokens)
        var opened = false
        defer { if !opened && owns { fclose(file) } }
        func fail(_ field: String?, _ message: String) -> TraceError { .malformed(path: path, line: 1, field: field, message: message) }
        guard fseeko(file, 0, SEEK_END) == 0 else { throw fail(nil, "cannot seek: \(String(cString: strerror(errno)))") }
        let fileSize = Int(ftello(file))
        rewind(file)
        var fixed = [UInt8](repeating: 0, count: BinaryTrace.fixedHeaderBytes)
        if fread(&fixed, 1, fixed.count, file) != fixed.count { throw fail(nil, "the file ends early (truncated binary trace)") }
        guard Array(fixed[0..<8]) == BinaryTrace.magic else { throw fail(nil, "not a moesim binary trace (bad magic)") }
        func u32(_ at: Int) -> Int { Int(fixed[at..<at + 4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }) }
        let fileVersion = u32(8), layers = u32(12), experts = u32(16), topK = u32(20), flags = u32(24)
        let tokens64 = fixed[28..<36].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let jsonCount = u32(36)
        guard fileVersion == Int(BinaryTrace.version) else { throw fail("version", "version \(fileVersion), this moesim reads version \(BinaryTrace.version)") }
        for (field, value, range) in [("layers", layers, Limits.layers), ("experts", experts, Limits.experts), ("top_k", topK, Limits.topK)]
        where !range.contains(value) {
            throw fail(field, "\(value) is outside \(Limits.describe(range)) (docs/trace-format.md, Limits)")
        }
        guard flags & ~1 == 0 else { throw fail("flags", "unknown flags \(flags): written by a newer moesim?") }
        guard tokens64 <= UInt64(Limits.tokens) else { throw fail("tokens", "\(tokens64) tokens; at most \(Limits.tokens)") }
        guard jsonCount <= BinaryTrace.maxJSONHeaderBytes else { throw fail(nil, "a JSON header of \(jsonCount) bytes; at most \(BinaryTrace.maxJSONHeaderBytes)") }
        tokens = Int(tokens64)
        hasWeights = flags & 1 == 1
        routedIDs = tokens * layers * topK  // below 2^31 · 2^18: no overflow
        columnsStart = BinaryTrace.fixedHeaderBytes + jsonCount
        let expectedSize = columnsStart + tokens * 9 + routedIDs * (hasWeights ? 6 : 2)
        guard fileSize == expectedSize else {
            throw fail(nil, "the file has \(fileSize) bytes but its header describes \(expectedSize) (\(tokens) tokens of \(layers) layers, top-\(topK)\(hasWeights ? ", with weights" : "")): truncated or damaged")
        }
        var json = [UInt8](repeating: 0, count: jsonCount)
        if jsonCount > 0 && fread(&json, 1, jsonCount, file) != jsonCount { throw fail(nil, "the file ends early (truncated binary trace)") }
        header = try json.withUnsafeBufferPointer { try TraceHeader.parse($0, path: path) }
        for (field, binary, text) in [("layers", layers, header.layers), ("experts", experts, header.experts), ("top_k", topK, header.topK)]
        where binary != text {
            throw fail(field, "\(binary) in the binary header but \(text) in its JSON header")
        }
        opened = true
    }

    deinit { if ownsFile { fclose(file) } }

    /// The next `count` tokens (fewer at the end of the file; none after it), checked.
    func read(tokens count: Int) throws -> RoutingTrace {
        let t0 = nextToken, n = min(count, tokens - nextToken)
        let cells = header.layers * header.topK
        /// Tokens t0 ..< t0 + n of the column that starts at `start` with `perToken` values a token, read straight
        /// into uninitialised storage.
        func column<T>(at start: Int, perToken: Int, of: T.Type) throws -> [T] {
            let count = n * perToken, stride = MemoryLayout<T>.stride
            guard count > 0 else { return [] }
            guard fseeko(file, off_t(start + t0 * perToken * stride), SEEK_SET) == 0 else {
                throw TraceError.malformed(path: path, line: t0 + 2, field: nil, message: "cannot seek: \(String(cString: strerror(errno)))")
            }
            return try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
                if fread(buffer.baseAddress, stride, count, file) != count {
                    throw TraceError.malformed(path: path, line: t0 + 2, field: nil, message: "the file ends early (truncated binary trace)")
                }
                initialized = count
            }
        }
        let at = BinaryTrace.Columns(columnsStart: columnsStart, tokens: tokens, cells: cells)
        var seq = try column(at: at.seq, perToken: 1, of: Int32.self)
        var pos = try column(at: at.pos, perToken: 1, of: Int32.self)
        let phaseBytes = try column(at: at.phase, perToken: 1, of: UInt8.self)
        var ids = try column(at: at.experts, perToken: cells, of: UInt16.self)
        var weights = try column(at: at.weights, perToken: hasWeights ? cells : 0, of: Float.self)
        #if _endian(big)
        seq = seq.map { Int32(littleEndian: $0) }; pos = pos.map { Int32(littleEndian: $0) }
        ids = ids.map { UInt16(littleEndian: $0) }
        weights = weights.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }
        #endif
        let phases = try BinaryTrace.checkContent(path: path, header: header, first: t0, order: &order, seq: seq, pos: pos,
                                                  phaseBytes: phaseBytes, ids: ids, weights: weights)
        nextToken += n
        return RoutingTrace(header: header, name: RoutingTrace.traceName(path), seq: seq, pos: pos, phase: phases,
                            experts: ids, weights: weights)
    }

    /// The next token, a block of the file at a time.
    func next(into record: inout TokenRecord) throws -> Bool {
        if block == nil || inBlock == block!.tokenCount {
            guard nextToken < tokens else { return false }
            block = try read(tokens: blockTokens)
            inBlock = 0
        }
        block!.record(inBlock, into: &record)
        inBlock += 1
        return true
    }
}

/// Reads a trace one token at a time: its JSON lines (`TraceReader`) or its binary columns (`BinaryTraceReader`).
protocol TokenRecordReader: AnyObject {
    var header: TraceHeader { get }
    /// Fills `record` with the next token; false at the end.
    func next(into record: inout TokenRecord) throws -> Bool
}

extension TraceReader: TokenRecordReader {}

extension BinaryTrace {
    /// A reader of `path` one token at a time, whichever format its name says.
    static func records(_ path: String) throws -> TokenRecordReader {
        isBinary(path) ? try BinaryTraceReader(path: path) : try TraceReader(path: path)
    }
}

extension RoutingTrace {
    /// The header of the trace at `path` (either format), read without its tokens.
    public static func header(of path: String) throws -> TraceHeader { try BinaryTrace.records(path).header }

    /// Reads and checks every token of the trace at `path` (either format) as `load` does, without holding them:
    /// what `trace validate` reports, for traces of any length.
    public static func check(_ path: String) throws -> (header: TraceHeader, tokens: Int, missingCells: Int) {
        if BinaryTrace.isBinary(path) {
            let reader = try BinaryTraceReader(path: path)
            var missing = 0
            while reader.nextToken < reader.tokens { missing += try reader.read(tokens: 1 << 16).missingCells }
            return (reader.header, reader.tokens, missing)
        }
        let reader = try TraceReader(path: path)
        var record = TokenRecord(layers: reader.header.layers, topK: reader.header.topK)
        while try reader.next(into: &record) {}
        return (reader.header, reader.tokens, reader.missingCells)
    }
}
