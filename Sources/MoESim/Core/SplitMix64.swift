/// A small, fast, seedable random number generator (Steele, Lea and Flood 2014).
///
///     var rng = SplitMix64(seed: 42)
///     let x = rng.nextDouble()   // in [0, 1)
///
/// The same seed gives the same sequence on every platform, which is what makes synthetic traces reproducible.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform double in [0, 1) built from the top 53 bits.
    public mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// A uniform integer in 0..<bound (bound > 0), by Lemire's multiply-shift (bias below 2^-32 for small bounds).
    public mutating func nextInt(below bound: Int) -> Int {
        Int((UInt64(bound).multipliedFullWidth(by: next())).high)
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension SplitMix64 {
    /// `count` Gaussian samples N(0, scale²), by Box-Muller: each pair of uniforms gives two samples (seeded
    /// synthetic weights and hidden states for numerics).
    public mutating func gaussians(_ count: Int, scale: Double = 1) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        var i = 0
        while i < count {
            let u = 1 - nextDouble(), v = nextDouble()  // u in (0, 1]: log(u) is finite
            let r = (-2 * log(u)).squareRoot() * scale, angle = 2 * Double.pi * v
            out[i] = Float(r * cos(angle))
            if i + 1 < count { out[i + 1] = Float(r * sin(angle)) }
            i += 2
        }
        return out
    }
}
