import COpenBLAS

/// One expert's feed-forward network, computed with OpenBLAS `cblas_sgemm` over a batch of tokens.
///
///     let e = ExpertFFN(hidden: 64, ffn: 224, matrices: 3, seed: 7)
///     let y = e.forward(x, tokens: 4)   // [tokens × hidden], row-major
///
/// SwiGLU (3 matrices, Mixtral/DeepSeek/Qwen): `y = (silu(x·W_gate) ⊙ (x·W_up)) · W_down`; a plain FFN (2 matrices,
/// Switch): `y = relu(x·W_in) · W_out`. Weights are seeded Gaussians scaled by 1/sqrt(fan-in), row-major
/// (`W_gate`, `W_up`: hidden × ffn; `W_down`: ffn × hidden).
public struct ExpertFFN: Sendable {
    public let hidden: Int
    public let ffn: Int
    public let matrices: Int
    /// W_gate (or W_in), W_up (SwiGLU only), W_down (or W_out).
    public var weights: [[Float]]

    public init(hidden: Int, ffn: Int, matrices: Int, seed: UInt64) {
        precondition(matrices == 2 || matrices == 3)
        self.hidden = hidden; self.ffn = ffn; self.matrices = matrices
        var rng = SplitMix64(seed: seed)
        func gaussian(_ count: Int, fanIn: Int) -> [Float] { rng.gaussians(count, scale: 1 / Double(fanIn).squareRoot()) }
        var w = [gaussian(hidden * ffn, fanIn: hidden)]
        if matrices == 3 { w.append(gaussian(hidden * ffn, fanIn: hidden)) }
        w.append(gaussian(ffn * hidden, fanIn: ffn))
        weights = w
    }

    /// The same expert with every matrix replaced by its dequantised `bits`-bit version.
    public func quantized(bits: Int, groupSize: Int) -> ExpertFFN {
        var copy = self
        copy.weights = weights.map { QuantizedWeights($0, bits: bits, groupSize: groupSize).dequantized() }
        return copy
    }

    /// `y` for `tokens` rows of `x` (row-major, tokens × hidden).
    public func forward(_ x: [Float], tokens: Int) -> [Float] {
        precondition(x.count == tokens * hidden)
        var h = [Float](repeating: 0, count: tokens * ffn)
        gemm(x, weights[0], &h, m: tokens, n: ffn, k: hidden)
        if matrices == 3 {
            var u = [Float](repeating: 0, count: tokens * ffn)
            gemm(x, weights[1], &u, m: tokens, n: ffn, k: hidden)
            for i in 0..<h.count { h[i] = h[i] / (1 + exp(-h[i])) * u[i] }  // silu(gate) ⊙ up
        } else {
            for i in 0..<h.count { h[i] = max(0, h[i]) }
        }
        var y = [Float](repeating: 0, count: tokens * hidden)
        gemm(h, weights[matrices - 1], &y, m: tokens, n: hidden, k: ffn)
        return y
    }

    /// C[m×n] = A[m×k] · B[k×n], row-major, single precision.
    private func gemm(_ a: [Float], _ b: [Float], _ c: inout [Float], m: Int, n: Int, k: Int) {
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1,
                                pa.baseAddress, Int32(k), pb.baseAddress, Int32(n), 0, pc.baseAddress, Int32(n))
                }
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
