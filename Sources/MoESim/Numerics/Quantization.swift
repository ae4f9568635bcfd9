/// Symmetric group-wise integer quantisation of weights (the scheme of docs/numerics.md).
///
///     let q = QuantizedWeights(weights, bits: 4, groupSize: 64)
///     let back = q.dequantized()   // |w - back| <= max|w in group| / (2 · (2^(bits-1) - 1))
///
/// Each run of `groupSize` consecutive weights shares one scale, `max|w| / qmax` with `qmax = 2^(bits-1) - 1`
/// (127, 7 and 1 for 8, 4 and 2 bits); a weight is stored as `round(w / scale)` clamped to `[-qmax, qmax]`.
/// Invariant: `codes.count == count`, one scale per group.
public struct QuantizedWeights: Sendable {
    public let bits: Int
    public let groupSize: Int
    public let count: Int
    public let codes: [Int8]
    public let scales: [Float]

    public var qmax: Int { (1 << (bits - 1)) - 1 }

    public init(_ weights: [Float], bits: Int, groupSize: Int) {
        precondition([2, 4, 8].contains(bits) && groupSize > 0, "bits must be 2, 4 or 8 and groups positive")
        self.bits = bits
        self.groupSize = groupSize
        count = weights.count
        let qmax = Float((1 << (bits - 1)) - 1)
        var codes = [Int8](repeating: 0, count: weights.count)
        var scales: [Float] = []
        scales.reserveCapacity((weights.count + groupSize - 1) / groupSize)
        var start = 0
        while start < weights.count {
            let end = min(start + groupSize, weights.count)
            var peak: Float = 0
            for i in start..<end { peak = max(peak, abs(weights[i])) }
            let scale = peak > 0 ? peak / qmax : 1
            for i in start..<end { codes[i] = Int8(max(-qmax, min(qmax, (weights[i] / scale).rounded()))) }
            scales.append(scale)
            start = end
        }
        self.codes = codes
        self.scales = scales
    }

    /// The weights the codes stand for.
    public func dequantized() -> [Float] {
        var out = [Float](repeating: 0, count: count)
        for i in 0..<count { out[i] = Float(codes[i]) * scales[i / groupSize] }
        return out
    }

    /// Bytes of the packed form: `bits` per weight plus a 2-byte (fp16) scale per group.
    public var packedBytes: Int { Self.packedBytes(count: count, bits: bits, groupSize: groupSize) }

    public static func packedBytes(count: Int, bits: Int, groupSize: Int) -> Int {
        (count * bits + 7) / 8 + 2 * ((count + groupSize - 1) / groupSize)
    }
}
