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
        if !trace.arrivalSeconds.isEmpty {
            throw ConfigError.file(path: path, line: nil, message: "the binary format does not hold arrival times (arrival_s); keep this trace as .jsonl")
        }
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
        return try read(file, path: path)
    }

    /// Reads and checks an open binary trace. Nothing is allocated before the file's size is known to match the
    /// shape its header declares, so a damaged header cannot ask for absurd memory.
    static func read(_ file: UnsafeMutablePointer<FILE>, path: String) throws -> RoutingTrace {
        func fail(_ field: String?, _ message: String) -> TraceError { .malformed(path: path, line: 1, field: field, message: message) }
        func readExactly(_ count: Int, into pointer: UnsafeMutableRawPointer?) throws {
            guard count > 0 else { return }
            if fread(pointer, 1, count, file) != count { throw fail(nil, "the file ends early (truncated binary trace)") }
        }
        guard fseek(file, 0, SEEK_END) == 0 else { throw fail(nil, "cannot seek: \(String(cString: strerror(errno)))") }
        let fileSize = ftell(file)
        rewind(file)
        var fixed = [UInt8](repeating: 0, count: fixedHeaderBytes)
        try fixed.withUnsafeMutableBytes { try readExactly($0.count, into: $0.baseAddress) }
        guard Array(fixed[0..<8]) == magic else { throw fail(nil, "not a moesim binary trace (bad magic)") }
        func u32(_ at: Int) -> Int { Int(fixed[at..<at + 4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }) }
        let fileVersion = u32(8), layers = u32(12), experts = u32(16), topK = u32(20), flags = u32(24)
        let tokens64 = fixed[28..<36].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let jsonCount = u32(36)
        guard fileVersion == Int(version) else { throw fail("version", "version \(fileVersion), this moesim reads version \(version)") }
        for (field, value, range) in [("layers", layers, Limits.layers), ("experts", experts, Limits.experts), ("top_k", topK, Limits.topK)]
        where !range.contains(value) {
            throw fail(field, "\(value) is outside \(Limits.describe(range)) (docs/trace-format.md, Limits)")
        }
        guard flags & ~1 == 0 else { throw fail("flags", "unknown flags \(flags): written by a newer moesim?") }
        guard tokens64 <= UInt64(Limits.tokens) else { throw fail("tokens", "\(tokens64) tokens; at most \(Limits.tokens)") }
        guard jsonCount <= maxJSONHeaderBytes else { throw fail(nil, "a JSON header of \(jsonCount) bytes; at most \(maxJSONHeaderBytes)") }
        let tokens = Int(tokens64), hasWeights = flags & 1 == 1
        let cells = tokens * layers * topK  // below 2^31 · 2^18: no overflow
        guard cells <= Limits.routedIDs else {
            throw fail("tokens", "\(cells) routed ids; at most \(Limits.routedIDs) can be held whole")
        }
        let expectedSize = fixedHeaderBytes + jsonCount + tokens * 9 + cells * (hasWeights ? 6 : 2)
        guard fileSize == expectedSize else {
            throw fail(nil, "the file has \(fileSize) bytes but its header describes \(expectedSize) (\(tokens) tokens of \(layers) layers, top-\(topK)\(hasWeights ? ", with weights" : "")): truncated or damaged")
        }
        var json = [UInt8](repeating: 0, count: jsonCount)
        try json.withUnsafeMutableBytes { try readExactly(jsonCount, into: $0.baseAddress) }
        let header = try json.withUnsafeBufferPointer { try TraceHeader.parse($0, path: path) }
        for (field, binary, text) in [("layers", layers, header.layers), ("experts", experts, header.experts), ("top_k", topK, header.topK)]
        where binary != text {
            throw fail(field, "\(binary) in the binary header but \(text) in its JSON header")
        }
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
        var weights = try column(hasWeights ? cells : 0, of: Float.self)
        #if _endian(big)
        seq = seq.map { Int32(littleEndian: $0) }; pos = pos.map { Int32(littleEndian: $0) }
        ids = ids.map { UInt16(littleEndian: $0) }
        weights = weights.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }
        #endif
        let phases = try checkContent(path: path, header: header, seq: seq, pos: pos, phaseBytes: phaseBytes, ids: ids,
                                      weights: weights)
        return RoutingTrace(header: header, name: RoutingTrace.traceName(path), seq: seq, pos: pos, phase: phases,
                            experts: ids, weights: weights)
    }

    static let fixedHeaderBytes = 8 + 5 * 4 + 8 + 4
    static let maxJSONHeaderBytes = 1 << 20

    /// Checks the columns as the JSON reader checks lines (on raw buffers: this loop bounds the loading speed):
    /// seq and pos not negative, known phases, sequence order, ids in range without duplicates, whole null cells,
    /// and weights in `Limits.gateWeight` exactly where ids are recorded (NaN in null cells).
    /// - Returns: the phases.
    private static func checkContent(path: String, header: TraceHeader, seq: [Int32], pos: [Int32], phaseBytes: [UInt8],
                                     ids: [UInt16], weights: [Float]) throws -> [Phase] {
        let layers = header.layers, experts = header.experts, topK = header.topK
        var order = SequenceOrder()
        var phases: [Phase] = []
        phases.reserveCapacity(seq.count)
        let cellsPerToken = layers * topK
        // The cell that last used each id: an O(k) duplicate check per cell.
        let seenInCell = UnsafeMutablePointer<Int>.allocate(capacity: experts)
        seenInCell.initialize(repeating: -1, count: experts)
        defer { seenInCell.deallocate() }
        var nullCells: [Int] = []  // the first slot of each null cell
        try ids.withUnsafeBufferPointer { ids in
            for t in 0..<seq.count {
                func bad(_ field: String, _ message: String) -> TraceError {
                    .malformed(path: path, line: t + 2, field: field, message: "token \(t): \(message)")
                }
                guard let phase = Phase(rawValue: phaseBytes[t]) else { throw bad("phase", "unknown phase code \(phaseBytes[t])") }
                phases.append(phase)
                if seq[t] < 0 { throw bad("seq", "\(seq[t]) is negative") }
                if pos[t] < 0 { throw bad("pos", "\(pos[t]) is negative") }
                if let problem = order.admit(seq: Int(seq[t]), pos: Int(pos[t]), phase: phase) { throw bad(problem.field, problem.message) }
                var base = t * cellsPerToken
                for l in 0..<layers {
                    if ids[base] == TokenRecord.missing {
                        nullCells.append(base)
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
            // Weights: in range where ids are, NaN in null cells. The common case is checked by counting, in a loop
            // without branches: if the only weights out of range are as many as the null cells' slots, and those
            // are all NaN, every other weight is in range. Otherwise a second pass finds the first bad one.
            guard !weights.isEmpty else { return }
            try weights.withUnsafeBufferPointer { w in
                let most = Float(Limits.gateWeight.upperBound)
                var outOfRange = 0
                for x in w { outOfRange &+= (x >= 0 && x <= most) ? 0 : 1 }
                if outOfRange == nullCells.count * topK
                    && nullCells.allSatisfy({ cell in (cell..<cell + topK).allSatisfy { w[$0].isNaN } }) { return }
                var cell = 0
                while cell < w.count {
                    let isNull = ids[cell] == TokenRecord.missing
                    for j in cell..<cell + topK where isNull ? !w[j].isNaN : !(w[j] >= 0 && w[j] <= most) {
                        let t = cell / cellsPerToken, l = cell % cellsPerToken / topK
                        throw TraceError.malformed(path: path, line: t + 2, field: "weights", message: "token \(t): layer \(l): "
                            + (isNull ? "weights must be NaN exactly where experts are null" : "weight \(w[j]) is outside \(Limits.describe(Limits.gateWeight))"))
                    }
                    cell += topK
                }
            }
        }
        return phases
    }

    private static func bytes<T>(of array: [T]) -> [UInt8] {
        #if _endian(big)
        #error("the binary trace writer assumes a little-endian host")
        #endif
        return array.withUnsafeBytes { Array($0) }
    }
}
