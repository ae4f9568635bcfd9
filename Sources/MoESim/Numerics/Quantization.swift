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
        self.bits = bits
        self.groupSize = groupSize
        count = weights.count
        var scales: [Float] = []
        let levels = Self.levels(weights, bits: bits, groupSize: groupSize, scales: &scales)
        codes = levels.map { Int8($0) }
        self.scales = scales
    }

    /// The weights the codes stand for.
    public func dequantized() -> [Float] {
        (0..<count).map { Float(codes[$0]) * scales[$0 / groupSize] }
    }

    /// `QuantizedWeights(weights, bits:, groupSize:).dequantized()` without keeping the codes: what numerics mode
    /// builds its low-precision experts with (bit for bit the same values, eight weights at a time).
    public static func roundTrip(_ weights: [Float], bits: Int, groupSize: Int) -> [Float] {
        var scales: [Float] = []
        var out = levels(weights, bits: bits, groupSize: groupSize, scales: &scales)
        out.withUnsafeMutableBufferPointer { out in
            scales.withUnsafeBufferPointer { scales in
                for g in 0..<scales.count {
                    let scale = scales[g]
                    for i in (g * groupSize)..<min((g + 1) * groupSize, out.count) { out[i] *= scale }
                }
            }
        }
        return out
    }

    /// Each weight's code as a float (a whole number in `[-qmax, qmax]`), and each group's scale: `max|w| / qmax`
    /// (1 for an all-zero group), the code `round(w / scale)` with ties away from zero, clamped.
    static func levels(_ weights: [Float], bits: Int, groupSize: Int, scales: inout [Float]) -> [Float] {
        precondition([2, 4, 8].contains(bits) && groupSize > 0, "bits must be 2, 4 or 8 and groups positive")
        let qmax = Float((1 << (bits - 1)) - 1), n = weights.count
        scales = [Float](repeating: 1, count: (n + groupSize - 1) / groupSize)
        return [Float](unsafeUninitializedCapacity: n) { out, initialised in
            weights.withUnsafeBufferPointer { w in
                for g in 0..<scales.count {
                    let start = g * groupSize, end = min(start + groupSize, n)
                    var peak: Float = 0
                    for i in start..<end { peak = max(peak, abs(w[i])) }
                    let scale = peak > 0 ? peak / qmax : 1
                    scales[g] = scale
                    var i = start
                    let lanes = SIMD8<Float>(repeating: 0), vscale = lanes + scale, vqmax = lanes + qmax
                    while i + 8 <= end {
                        let q = SIMD8<Float>(UnsafeBufferPointer(rebasing: w[i..<(i + 8)])) / vscale
                        var level = roundedHalfAwayFromZero(q)  // then clamped (masks: inlined, unlike `clamped`)
                        level.replace(with: vqmax, where: level .> vqmax)
                        level.replace(with: -vqmax, where: level .< -vqmax)
                        for j in 0..<8 { out[i + j] = level[j] }
                        i += 8
                    }
                    while i < end {
                        out[i] = max(-qmax, min(qmax, roundedHalfAwayFromZero(w[i] / scale)))
                        i += 1
                    }
                }
            }
            initialised = n
        }
    }

    /// `x.rounded()` (ties away from zero) for |x| < 2^22, with no call into libm and no branch: adding and
    /// subtracting 1.5 · 2^23 rounds to the nearest integer, ties to even (both exact for such x); a tie that went
    /// toward zero (below a positive x, above a negative one) then moves one away from it.
    @inline(__always)
    static func roundedHalfAwayFromZero(_ x: Float) -> Float {
        let even = (x + 12_582_912) - 12_582_912, d = x - even
        let up: Float = d == 0.5 && x > 0 ? 1 : 0, down: Float = d == -0.5 && x < 0 ? 1 : 0
        return even + up - down
    }

    /// Eight lanes of `roundedHalfAwayFromZero`.
    @inline(__always)
    static func roundedHalfAwayFromZero(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let magic = SIMD8<Float>(repeating: 12_582_912), zero = SIMD8<Float>(repeating: 0), one = zero + 1
        let even = (x + magic) - magic, d = x - even
        return even + zero.replacing(with: one, where: d .== 0.5 .& x .> 0)
            - zero.replacing(with: one, where: d .== -0.5 .& x .< 0)
    }

    /// Bytes of the packed form: `bits` per weight plus a 2-byte (fp16) scale per group.
    public var packedBytes: Int { Self.packedBytes(count: count, bits: bits, groupSize: groupSize) }

    public static func packedBytes(count: Int, bits: Int, groupSize: Int) -> Int {
        (count * bits + 7) / 8 + 2 * ((count + groupSize - 1) / groupSize)
    }
}
