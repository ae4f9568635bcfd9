/// Streams the token lines of a v1 routing trace (`.jsonl` or `.jsonl.gz`), validating each one.
///
///     let reader = try TraceReader(path: "traces/mixtral-synth.jsonl.gz")
///     var token = TokenRecord(layers: reader.header.layers, topK: reader.header.topK)
///     while try reader.next(into: &token) { … }
///
/// Memory does not grow with the file: one line is held at a time. Errors name the file, line and field.
/// Checked per line: layer count, ids in range, no duplicate id in a cell, weights shaped like the ids, known phase;
/// across lines: a sequence's tokens are contiguous, positions increase, prefill never follows decode.
public final class TraceReader {
    public let path: String
    public let header: TraceHeader
    private let lines: LineReader
    private var order = SequenceOrder()
    private var weightsPresent: Bool?
    /// The sequence of the previous line, and the last `arrival_s` read (arrivals must not decrease).
    private var previousSeq: Int?
    private var lastArrival = 0.0
    public private(set) var missingCells = 0
    public private(set) var tokens = 0

    public convenience init(path: String) throws {
        try self.init(source: try openByteSource(path), path: path)
    }

    init(source: ByteSource, path: String) throws {
        self.path = path
        lines = LineReader(source: source)
        guard let first = try lines.nextLine() else { throw TraceError.empty(path: path) }
        header = try TraceHeader.parse(first, path: path)
    }

    /// The 1-based line number of the last line read.
    public var lineNumber: Int { lines.lineNumber }

    /// Reads the next token into `record`; returns false at the end of the file. Blank lines are skipped.
    public func next(into record: inout TokenRecord) throws -> Bool {
        while let line = try lines.nextLine() {
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            do {
                try parse(line, into: &record)
            } catch let failure as LineFailure {
                throw TraceError.malformed(path: path, line: lines.lineNumber, field: failure.field, message: failure.message)
            } catch let failure as JSONCursor.Failure {
                throw TraceError.malformed(path: path, line: lines.lineNumber, field: nil, message: failure.message)
            }
            tokens += 1
            if tokens > Limits.tokens {
                throw TraceError.malformed(path: path, line: lines.lineNumber, field: nil, message: "more than \(Limits.tokens) tokens")
            }
            return true
        }
        return false
    }

    private struct LineFailure: Error { let field: String?; let message: String }

    private func parse(_ line: UnsafeBufferPointer<UInt8>, into record: inout TokenRecord) throws {
        let layers = header.layers, k = header.topK
        var cursor = JSONCursor(line)
        var seen: (seq: Bool, pos: Bool, phase: Bool, experts: Bool, weights: Bool, pred: Bool) = (false, false, false, false, false, false)
        record.arrivalSeconds = nil
        func wrap<T>(_ field: String, _ body: () throws -> T) throws -> T {
            do { return try body() } catch let f as JSONCursor.Failure { throw LineFailure(field: field, message: f.message) }
        }
        try cursor.expect(UInt8(ascii: "{"))
        if !cursor.consume(UInt8(ascii: "}")) {
            repeat {
                let key = try cursor.string()
                try cursor.expect(UInt8(ascii: ":"))
                if key.equals("seq") {
                    record.seq = try wrap("seq") { try cursor.integer() }
                    if !Limits.seq.contains(record.seq) {
                        throw LineFailure(field: "seq", message: "\(record.seq) is outside \(Limits.describe(Limits.seq))")
                    }
                    seen.seq = true
                } else if key.equals("pos") {
                    record.pos = try wrap("pos") { try cursor.integer() }
                    if !Limits.pos.contains(record.pos) {
                        throw LineFailure(field: "pos", message: "\(record.pos) is outside \(Limits.describe(Limits.pos))")
                    }
                    seen.pos = true
                } else if key.equals("phase") {
                    let value = try wrap("phase") { try cursor.string() }
                    if value.equals("prefill") { record.phase = .prefill }
                    else if value.equals("decode") { record.phase = .decode }
                    else {
                        throw LineFailure(field: "phase", message: "unknown phase \"\(String(decoding: value, as: UTF8.self))\"; expected \"prefill\" or \"decode\"")
                    }
                    seen.phase = true
                } else if key.equals("experts") {
                    try wrap("experts") { try parseExperts(&cursor, into: &record, layers: layers, k: k) }
                    seen.experts = true
                } else if key.equals("pred") {
                    if cursor.consumeNull() { record.hasPredictions = false } else {
                        try wrap("pred") { try parsePredictions(&cursor, into: &record, layers: layers) }
                        record.hasPredictions = true
                    }
                    seen.pred = true
                } else if key.equals("arrival_s") {
                    let t = try wrap("arrival_s") { try cursor.number() }
                    if !Limits.arrivalSeconds.contains(t) {
                        throw LineFailure(field: "arrival_s", message: "\(t) is outside \(Limits.describe(Limits.arrivalSeconds)) seconds")
                    }
                    record.arrivalSeconds = t
                } else if key.equals("weights") {
                    if cursor.consumeNull() { seen.weights = false } else {
                        try wrap("weights") { try parseWeights(&cursor, into: &record, layers: layers, k: k) }
                        seen.weights = true
                    }
                } else {
                    try wrap(String(decoding: key, as: UTF8.self)) { try cursor.skipValue() }  // later versions' fields
                }
            } while cursor.consume(UInt8(ascii: ","))
            try cursor.expect(UInt8(ascii: "}"))
        }
        if cursor.peek() != 0 { throw LineFailure(field: nil, message: "unexpected text after the JSON object") }
        for (present, name) in [(seen.seq, "seq"), (seen.pos, "pos"), (seen.phase, "phase"), (seen.experts, "experts")] where !present {
            throw LineFailure(field: name, message: "missing")
        }
        record.hasWeights = seen.weights
        if !seen.pred { record.hasPredictions = false }
        if let expected = weightsPresent, expected != seen.weights {
            throw LineFailure(field: "weights", message: expected ? "missing here but present on earlier lines" : "present here but missing on earlier lines")
        }
        weightsPresent = seen.weights
        if seen.weights {
            for l in 0..<layers where (record.experts[l * k] == TokenRecord.missing) != (record.weights[l * k].isNaN) {
                throw LineFailure(field: "weights", message: "layer \(l): weights must be null exactly where experts are null")
            }
        }
        for l in 0..<layers where record.experts[l * k] == TokenRecord.missing { missingCells += 1 }
        if let problem = order.admit(seq: record.seq, pos: record.pos, phase: record.phase) {
            throw LineFailure(field: problem.field, message: problem.message)
        }
        if let t = record.arrivalSeconds {
            if previousSeq == record.seq {
                throw LineFailure(field: "arrival_s", message: "only a sequence's first line may give its arrival")
            }
            if t < lastArrival {
                throw LineFailure(field: "arrival_s", message: "\(t) is earlier than the previous sequence's \(lastArrival): sequences must be in arrival order")
            }
            lastArrival = t
        }
        previousSeq = record.seq
    }

    /// Reads `[cell, cell, …]` with exactly one cell per layer; `cell` gets the layer and whether it is `null`
    /// (when it is not, `cell` reads it from the cursor).
    private func parseLayers(_ c: inout JSONCursor, layers: Int,
                             cell: (inout JSONCursor, Int, Bool) throws -> Void) throws {
        try c.expect(UInt8(ascii: "["))
        var layer = 0
        if !c.consume(UInt8(ascii: "]")) {
            repeat {
                if layer >= layers { throw JSONCursor.Failure(message: "more than the header's \(layers) layers") }
                let isNull = c.consumeNull()
                try cell(&c, layer, isNull)
                layer += 1
            } while c.consume(UInt8(ascii: ","))
            try c.expect(UInt8(ascii: "]"))
        }
        if layer != layers { throw JSONCursor.Failure(message: "\(layer) layers, expected \(layers) (header)") }
    }

    /// Reads `[v, v, …]`, calling `value` for each element.
    private func parseList(_ c: inout JSONCursor, value: (inout JSONCursor) throws -> Void) throws {
        try c.expect(UInt8(ascii: "["))
        if c.consume(UInt8(ascii: "]")) { return }
        repeat { try value(&c) } while c.consume(UInt8(ascii: ","))
        try c.expect(UInt8(ascii: "]"))
    }

    private func parseExperts(_ c: inout JSONCursor, into record: inout TokenRecord, layers: Int, k: Int) throws {
        let experts = header.experts
        try parseLayers(&c, layers: layers) { c, layer, isNull in
            let base = layer * k
            if isNull {
                for j in 0..<k { record.experts[base + j] = TokenRecord.missing }
                return
            }
            var n = 0
            try parseList(&c) { c in
                let id = try c.integer()
                if id < 0 || id >= experts {
                    throw JSONCursor.Failure(message: "layer \(layer): expert id \(id) out of range 0..<\(experts)")
                }
                if n >= k { throw JSONCursor.Failure(message: "layer \(layer): more than top_k = \(k) ids") }
                for j in 0..<n where record.experts[base + j] == UInt16(id) {
                    throw JSONCursor.Failure(message: "layer \(layer): duplicate expert id \(id)")
                }
                record.experts[base + n] = UInt16(id)
                n += 1
            }
            if n != k { throw JSONCursor.Failure(message: "layer \(layer): \(n) ids, expected top_k = \(k)") }
        }
    }

    /// `pred`: per layer, null or the distinct ids a predictor running at an earlier layer proposed for this layer.
    private func parsePredictions(_ c: inout JSONCursor, into record: inout TokenRecord, layers: Int) throws {
        let experts = header.experts
        record.predicted.removeAll(keepingCapacity: true)
        record.predictedStart[0] = 0
        try parseLayers(&c, layers: layers) { c, layer, isNull in
            let start = record.predicted.count
            if !isNull {
                try parseList(&c) { c in
                    let id = try c.integer()
                    if id < 0 || id >= experts {
                        throw JSONCursor.Failure(message: "layer \(layer): expert id \(id) out of range 0..<\(experts)")
                    }
                    if record.predicted[start...].contains(UInt16(id)) {
                        throw JSONCursor.Failure(message: "layer \(layer): duplicate expert id \(id)")
                    }
                    record.predicted.append(UInt16(id))
                }
            }
            record.predictedStart[layer + 1] = Int32(record.predicted.count)
        }
    }

    private func parseWeights(_ c: inout JSONCursor, into record: inout TokenRecord, layers: Int, k: Int) throws {
        try parseLayers(&c, layers: layers) { c, layer, isNull in
            let base = layer * k
            if isNull {
                for j in 0..<k { record.weights[base + j] = .nan }
                return
            }
            var n = 0
            try parseList(&c) { c in
                let w = try c.number()
                if !Limits.gateWeight.contains(w) {
                    throw JSONCursor.Failure(message: "layer \(layer): weight \(w) is outside \(Limits.describe(Limits.gateWeight))")
                }
                if n >= k { throw JSONCursor.Failure(message: "layer \(layer): more weights than top_k = \(k)") }
                record.weights[base + n] = Float(w)
                n += 1
            }
            if n != k { throw JSONCursor.Failure(message: "layer \(layer): \(n) weights do not match the \(k) expert ids") }
        }
    }
}

/// Checks that tokens arrive sequence by sequence, in position order, prefill before decode.
struct SequenceOrder {
    private var current: (seq: Int, pos: Int, phase: Phase)?
    private var finished = Set<Int>()

    mutating func admit(seq: Int, pos: Int, phase: Phase) -> (field: String, message: String)? {
        if let c = current, c.seq == seq {
            if pos <= c.pos { return ("pos", "position \(pos) does not follow \(c.pos) in sequence \(seq)") }
            if phase == .prefill && c.phase == .decode { return ("phase", "prefill token after decode tokens in sequence \(seq)") }
        } else {
            if let c = current { finished.insert(c.seq) }
            if finished.contains(seq) { return ("seq", "sequence \(seq) resumes after other sequences; a sequence's tokens must be contiguous") }
        }
        current = (seq, pos, phase)
        return nil
    }
}
