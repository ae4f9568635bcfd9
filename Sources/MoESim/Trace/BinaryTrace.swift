#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The compact binary trace format (`.moet`): the columns of a `RoutingTrace` laid out as they sit in memory, so
/// loading is a handful of bulk reads (docs/trace-format.md, "Binary format").
///
///     try BinaryTrace.write(trace, to: "t.moet")
///     let same = try BinaryTrace.read("t.moet")
///
/// Layout, little-endian: magic `MOETRACE`, u32 version (1), u32 layers, u32 experts, u32 top_k, u32 flags
/// (bit 0: weights), u64 tokens, u32 n + n bytes of the JSON header line (provenance), then the columns
/// seq i32[T], pos i32[T], phase u8[T], experts u16[T·L·K] (0xFFFF in null cells), weights f32[T·L·K] if flagged.
/// Reading checks what the JSON reader checks: ids in range, no duplicates, whole null cells, phases, order.
public enum BinaryTrace {
    static let magic: [UInt8] = Array("MOETRACE".utf8)
    static let version: UInt32 = 1

    public static func isBinary(_ path: String) -> Bool { path.hasSuffix(".moet") }

    /// Writes `trace` atomically. Recorded predictions (`pred`) are not part of version 1: they are refused.
    public static func write(_ trace: RoutingTrace, to path: String) throws {
        if trace.hasPredictions {
            throw ConfigError.file(path: path, line: nil, message: "the binary format does not hold recorded predictions (pred); keep this trace as .jsonl")
        }
        let sink = try AtomicFileSink(path: path)
        var head: [UInt8] = magic
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { head.append(contentsOf: $0) } }
        let h = trace.header
        u32(Int(version)); u32(h.layers); u32(h.experts); u32(h.topK); u32(trace.hasWeights ? 1 : 0)
        withUnsafeBytes(of: UInt64(trace.tokenCount).littleEndian) { head.append(contentsOf: $0) }
        let json = Array(h.jsonLine().utf8)
        u32(json.count)
        head.append(contentsOf: json)
        try sink.write(bytes: head)
        try sink.write(bytes: bytes(of: trace.seq))
        try sink.write(bytes: bytes(of: trace.pos))
        try sink.write(bytes: trace.phase.map(\.rawValue))
        try sink.write(bytes: bytes(of: trace.experts))
        if trace.hasWeights { try sink.write(bytes: bytes(of: trace.weights)) }
        try sink.commit()
    }

    /// Reads and checks a `.moet` file.
    /// - Throws: `TraceError` naming the file and, for bad content, the token (as `line` = token index + 2, the line
    ///   it would have in the JSON form).
    public static func read(_ path: String) throws -> RoutingTrace {
        guard let file = fopen(path, "rb") else {
            throw TraceError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        defer { fclose(file) }
        func fail(_ message: String) -> TraceError { .malformed(path: path, line: 1, field: nil, message: message) }
        func readExactly(_ count: Int, into pointer: UnsafeMutableRawPointer?) throws {
            guard count > 0 else { return }
            if fread(pointer, 1, count, file) != count { throw fail("the file ends early (truncated binary trace)") }
        }
        var fixed = [UInt8](repeating: 0, count: 8 + 5 * 4 + 8 + 4)
        try fixed.withUnsafeMutableBytes { try readExactly($0.count, into: $0.baseAddress) }
        guard Array(fixed[0..<8]) == magic else { throw fail("not a moesim binary trace (bad magic)") }
        func u32(_ at: Int) -> Int { Int(fixed[at..<at + 4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }) }
        let fileVersion = u32(8), layers = u32(12), experts = u32(16), topK = u32(20), flags = u32(24)
        let tokens = Int(fixed[28..<36].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        let jsonCount = u32(36)
        guard fileVersion == Int(version) else { throw fail("version \(fileVersion), this moesim reads version \(version)") }
        guard layers > 0, experts > 0, experts < Int(UInt16.max), topK > 0, topK <= experts, tokens < 1 << 40,
              jsonCount < 1 << 24 else { throw fail("implausible shape in the header") }
        var json = [UInt8](repeating: 0, count: jsonCount)
        try json.withUnsafeMutableBytes { try readExactly(jsonCount, into: $0.baseAddress) }
        var header = try json.withUnsafeBufferPointer { try TraceHeader.parse($0, path: path) }
        header.layers = layers; header.experts = experts; header.topK = topK
        let cells = tokens * layers * topK
        /// A column read straight into uninitialised array storage (no zero-filling first).
        func column<T>(_ count: Int, of: T.Type) throws -> [T] {
            try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
                try readExactly(count * MemoryLayout<T>.stride, into: buffer.baseAddress)
                initialized = count
            }
        }
        var seq = try column(tokens, of: Int32.self), pos = try column(tokens, of: Int32.self)
        let phaseBytes = try column(tokens, of: UInt8.self)
        var ids = try column(cells, of: UInt16.self)
        var weights = try column(flags & 1 == 1 ? cells : 0, of: Float.self)
        #if _endian(big)
        seq = seq.map { Int32(littleEndian: $0) }; pos = pos.map { Int32(littleEndian: $0) }
        ids = ids.map { UInt16(littleEndian: $0) }
        weights = weights.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }
        #endif
        // Check the content as the JSON reader does (on raw buffers: this loop bounds the loading speed).
        var order = SequenceOrder()
        var phases: [Phase] = []
        phases.reserveCapacity(tokens)
        let cellsPerToken = layers * topK
        // The cell that last used each id: an O(k) duplicate check per cell.
        let seenInCell = UnsafeMutablePointer<Int>.allocate(capacity: experts)
        seenInCell.initialize(repeating: -1, count: experts)
        defer { seenInCell.deallocate() }
        try ids.withUnsafeBufferPointer { ids in
            for t in 0..<tokens {
                func bad(_ field: String, _ message: String) -> TraceError {
                    .malformed(path: path, line: t + 2, field: field, message: "token \(t): \(message)")
                }
                guard let phase = Phase(rawValue: phaseBytes[t]) else { throw bad("phase", "unknown phase code \(phaseBytes[t])") }
                phases.append(phase)
                if let problem = order.admit(seq: Int(seq[t]), pos: Int(pos[t]), phase: phase) { throw bad(problem.field, problem.message) }
                var base = t * cellsPerToken
                for l in 0..<layers {
                    let first = ids[base]
                    if first == TokenRecord.missing {
                        for j in 1..<max(1, topK) where ids[base + j] != TokenRecord.missing {
                            throw bad("experts", "layer \(l): a cell is either all null or all ids")
                        }
                    } else {
                        for j in 0..<topK {
                            let id = ids[base + j]
                            if Int(id) >= experts {
                                throw bad("experts", id == TokenRecord.missing ? "layer \(l): a cell is either all null or all ids"
                                                                                : "layer \(l): expert id \(id) out of range 0..<\(experts)")
                            }
                            if seenInCell[Int(id)] == base { throw bad("experts", "layer \(l): duplicate expert id \(id)") }
                            seenInCell[Int(id)] = base
                        }
                    }
                    base += topK
                }
            }
        }
        if fgetc(file) != EOF { throw fail("unexpected bytes after the last column") }
        return RoutingTrace(header: header, name: RoutingTrace.traceName(path), seq: seq, pos: pos, phase: phases,
                            experts: ids, weights: weights)
    }

    private static func bytes<T>(of array: [T]) -> [UInt8] {
        #if _endian(big)
        #error("the binary trace writer assumes a little-endian host")
        #endif
        return array.withUnsafeBytes { Array($0) }
    }
}
