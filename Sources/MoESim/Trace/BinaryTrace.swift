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

    /// Writes `trace` atomically. Arrival times and recorded predictions (`pred`) are not part of version 1: they
    /// are refused.
    public static func write(_ trace: RoutingTrace, to path: String) throws {
        try refuseWhatItCannotHold(trace, path: path)
        let writer = try BinaryTraceWriter(path: path, header: trace.header, tokens: trace.tokenCount, hasWeights: trace.hasWeights)
        try writer.append(trace)
        try writer.commit()
    }

    static func refuseWhatItCannotHold(_ trace: RoutingTrace, path: String) throws {
        if !trace.arrivalSeconds.isEmpty {
            throw ConfigError.file(path: path, line: nil, message: "the binary format does not hold arrival times (arrival_s); keep this trace as .jsonl")
        }
        if trace.hasPredictions {
            throw ConfigError.file(path: path, line: nil, message: "the binary format does not hold recorded predictions (pred); keep this trace as .jsonl")
        }
    }

    /// Where each column starts, for a file of `tokens` tokens and `cells` routed ids a token whose columns start at
    /// `columnsStart` (after the fixed and JSON headers).
    struct Columns {
        let seq: Int, pos: Int, phase: Int, experts: Int, weights: Int
        init(columnsStart: Int, tokens: Int, cells: Int) {
            seq = columnsStart
            pos = seq + 4 * tokens
            phase = pos + 4 * tokens
            experts = phase + tokens
            weights = experts + 2 * tokens * cells
        }
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

    /// Reads and checks an open binary trace, whole.
    static func read(_ file: UnsafeMutablePointer<FILE>, path: String) throws -> RoutingTrace {
        let reader = try BinaryTraceReader(file: file, path: path)
        guard reader.routedIDs <= Limits.routedIDs else {
            throw TraceError.malformed(path: path, line: 1, field: "tokens",
                                       message: "\(reader.routedIDs) routed ids; at most \(Limits.routedIDs) can be held whole: replay it with --stream")
        }
        return try reader.read(tokens: reader.tokens)
    }

    static let fixedHeaderBytes = 8 + 5 * 4 + 8 + 4
    static let maxJSONHeaderBytes = 1 << 20

    /// Checks the columns as the JSON reader checks lines (on raw buffers: this loop bounds the loading speed):
    /// seq and pos not negative, known phases, sequence order, ids in range without duplicates, whole null cells,
    /// and weights in `Limits.gateWeight` exactly where ids are recorded (NaN in null cells).
    /// - Returns: the phases.
    /// `first`: the file's index of the columns' first token (errors name the file's token); `order` carries the
    /// sequence order from the tokens before.
    static func checkContent(path: String, header: TraceHeader, first: Int, order: inout SequenceOrder, seq: [Int32],
                             pos: [Int32], phaseBytes: [UInt8], ids: [UInt16], weights: [Float]) throws -> [Phase] {
        let layers = header.layers, experts = header.experts, topK = header.topK
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
                    .malformed(path: path, line: first + t + 2, field: field, message: "token \(first + t): \(message)")
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
                        let t = first + cell / cellsPerToken, l = cell % cellsPerToken / topK
                        throw TraceError.malformed(path: path, line: t + 2, field: "weights", message: "token \(t): layer \(l): "
                            + (isNull ? "weights must be NaN exactly where experts are null" : "weight \(w[j]) is outside \(Limits.describe(Limits.gateWeight))"))
                    }
                    cell += topK
                }
            }
        }
        return phases
    }
}
