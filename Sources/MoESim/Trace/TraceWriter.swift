/// Writes a v1 routing trace (`.jsonl`, or `.jsonl.gz` when the name says so), atomically.
///
///     let writer = try TraceWriter(path: "out.jsonl.gz", header: header)
///     try writer.append(record)
///     try writer.finish()
///
/// Output is byte-stable: fixed key order, weights rounded to 5 decimals.
public final class TraceWriter {
    private let sink: AtomicFileSink
    private let header: TraceHeader
    private var line: [UInt8] = []

    public init(path: String, header: TraceHeader) throws {
        sink = try AtomicFileSink(path: path)
        self.header = header
        try sink.write(header.jsonLine() + "\n")
    }

    public func append(_ r: TokenRecord) throws {
        let k = header.topK
        line.removeAll(keepingCapacity: true)
        line.append(contentsOf: "{\"seq\":\(r.seq),\"pos\":\(r.pos),\"phase\":\"\(r.phase)\",".utf8)
        if let t = r.arrivalSeconds { line.append(contentsOf: "\"arrival_s\":\(t),".utf8) }
        line.append(contentsOf: "\"experts\":[".utf8)
        for l in 0..<header.layers {
            if l > 0 { line.append(UInt8(ascii: ",")) }
            if r.experts[l * k] == TokenRecord.missing { line.append(contentsOf: "null".utf8); continue }
            line.append(UInt8(ascii: "["))
            for j in 0..<k {
                if j > 0 { line.append(UInt8(ascii: ",")) }
                appendInteger(Int(r.experts[l * k + j]))
            }
            line.append(UInt8(ascii: "]"))
        }
        line.append(UInt8(ascii: "]"))
        if r.hasWeights {
            line.append(contentsOf: ",\"weights\":[".utf8)
            for l in 0..<header.layers {
                if l > 0 { line.append(UInt8(ascii: ",")) }
                if r.experts[l * k] == TokenRecord.missing { line.append(contentsOf: "null".utf8); continue }
                line.append(UInt8(ascii: "["))
                for j in 0..<k {
                    if j > 0 { line.append(UInt8(ascii: ",")) }
                    appendFixed5(r.weights[l * k + j])
                }
                line.append(UInt8(ascii: "]"))
            }
            line.append(UInt8(ascii: "]"))
        }
        if r.hasPredictions {
            line.append(contentsOf: ",\"pred\":[".utf8)
            for l in 0..<header.layers {
                if l > 0 { line.append(UInt8(ascii: ",")) }
                line.append(UInt8(ascii: "["))
                for (j, id) in r.predicted[Int(r.predictedStart[l])..<Int(r.predictedStart[l + 1])].enumerated() {
                    if j > 0 { line.append(UInt8(ascii: ",")) }
                    appendInteger(Int(id))
                }
                line.append(UInt8(ascii: "]"))
            }
            line.append(UInt8(ascii: "]"))
        }
        line.append(contentsOf: "}\n".utf8)
        try sink.write(bytes: line)
    }

    public func finish() throws { try sink.commit() }

    private func appendInteger(_ value: Int) {
        if value >= 10 { appendInteger(value / 10) }
        line.append(UInt8(48 + value % 10))
    }

    /// A non-negative weight with at most 5 decimals, trailing zeros dropped ("0.5", "1.0", "0.77831").
    private func appendFixed5(_ w: Float) {
        let scaled = Int((Double(w) * 100_000).rounded())
        appendInteger(scaled / 100_000)
        line.append(UInt8(ascii: "."))
        var fraction = scaled % 100_000, digits = 5
        while digits > 1 && fraction % 10 == 0 { fraction /= 10; digits -= 1 }
        var divisor = 1
        for _ in 1..<digits { divisor *= 10 }
        while divisor > 0 { line.append(UInt8(48 + (fraction / divisor) % 10)); divisor /= 10 }
    }
}
