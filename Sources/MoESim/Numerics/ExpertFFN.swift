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
        var rng = SplitMix64(seed: seed)
        self.init(hidden: hidden, ffn: ffn, matrices: matrices) { count, scale in rng.gaussians(count, scale: scale) }
    }

    /// Weights drawn from `pool` (numerics mode makes hundreds of experts; fresh Box-Muller samples for each
    /// would take most of its time).
    public init(hidden: Int, ffn: Int, matrices: Int, pool: GaussianPool, seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        self.init(hidden: hidden, ffn: ffn, matrices: matrices) { count, scale in pool.draw(count, scale: scale, rng: &rng) }
    }

    private init(hidden: Int, ffn: Int, matrices: Int, gaussians: (Int, Double) -> [Float]) {
        precondition(matrices == 2 || matrices == 3)
        self.hidden = hidden; self.ffn = ffn; self.matrices = matrices
        func gaussian(_ count: Int, fanIn: Int) -> [Float] { gaussians(count, 1 / Double(fanIn).squareRoot()) }
        var w = [gaussian(hidden * ffn, fanIn: hidden)]
        if matrices == 3 { w.append(gaussian(hidden * ffn, fanIn: hidden)) }
        w.append(gaussian(ffn * hidden, fanIn: ffn))
        weights = w
    }

    /// The same expert with every matrix replaced by its dequantised `bits`-bit version.
    public func quantized(bits: Int, groupSize: Int) -> ExpertFFN {
        var copy = self
        copy.weights = weights.map { QuantizedWeights.roundTrip($0, bits: bits, groupSize: groupSize) }
        return copy
    }

    /// `y` for `tokens` rows of `x` (row-major, tokens × hidden).
    public func forward(_ x: [Float], tokens: Int) -> [Float] {
        precondition(x.count == tokens * hidden)
        var h = Self.uninitialised(tokens * ffn)  // sgemm with beta 0 writes every element
        gemm(x, weights[0], &h, m: tokens, n: ffn, k: hidden)
        if matrices == 3 {
            var u = Self.uninitialised(tokens * ffn)
            gemm(x, weights[1], &u, m: tokens, n: ffn, k: hidden)
            h.withUnsafeMutableBufferPointer { ph in
                u.withUnsafeBufferPointer { pu in
                    for i in 0..<ph.count { ph[i] = ph[i] * pu[i] / (1 + expf(-ph[i])) }  // silu(gate) ⊙ up
                }
            }
        } else {
            h.withUnsafeMutableBufferPointer { ph in for i in 0..<ph.count { ph[i] = max(0, ph[i]) } }
        }
        var y = Self.uninitialised(tokens * hidden)
        gemm(h, weights[matrices - 1], &y, m: tokens, n: hidden, k: ffn)
        return y
    }

    private static func uninitialised(_ count: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { _, initialised in initialised = count }
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

/// A fixed table of seeded N(0, 1) samples that weight matrices read from a seeded start along a seeded small odd
/// stride (coprime with the power-of-two size, and short enough to read memory in order): every matrix is Gaussian
/// element by element, at the cost of a copy.
public final class GaussianPool: Sendable {
    let values: [Float]
    let mask: Int

    public init(log2Size: Int = 22, seed: UInt64 = 0x600D) {
        var rng = SplitMix64(seed: seed)
        values = rng.gaussians(1 << log2Size)
        mask = (1 << log2Size) - 1
    }

    /// `count` samples times `scale`, from a start and stride `rng` picks; random signs per draw.
    public func draw(_ count: Int, scale: Double, rng: inout SplitMix64) -> [Float] {
        let start = Int(rng.next() & UInt64(mask)), stride = Int(rng.next() & 7) | 1
        let sign: Float = rng.next() & 1 == 0 ? 1 : -1, s = Float(scale) * sign
        return values.withUnsafeBufferPointer { v in
            (0..<count).map { i in v[(start &+ i &* stride) & mask] * s }
        }
    }
}

/// The sgemm calls of one `ExpertFFN.forward`, on buffers allocated once and nothing else: the yardstick for the
/// overhead of our code around BLAS (`moesim bench --filter ffn`).
public final class RawSGEMM {
    let hidden: Int, ffn: Int, matrices: Int, tokens: Int
    private let x: [Float], w: [[Float]]
    private var h: [Float], u: [Float], y: [Float]

    public init(hidden: Int, ffn: Int, matrices: Int, tokens: Int) {
        self.hidden = hidden; self.ffn = ffn; self.matrices = matrices; self.tokens = tokens
        var rng = SplitMix64(seed: 3)
        x = rng.gaussians(tokens * hidden)
        w = (0..<matrices).map { _ in rng.gaussians(hidden * ffn) }
        h = [Float](repeating: 0, count: tokens * ffn)
        u = h
        y = [Float](repeating: 0, count: tokens * hidden)
    }

    /// The forward pass's sgemms on its own weight matrices.
    public func run() {
        let (m, n, k) = (Int32(tokens), Int32(ffn), Int32(hidden))
        x.withUnsafeBufferPointer { px in
            h.withUnsafeMutableBufferPointer { ph in
                w[0].withUnsafeBufferPointer { pw in
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, px.baseAddress, k, pw.baseAddress, n, 0, ph.baseAddress, n)
                }
                if matrices == 3 {
                    u.withUnsafeMutableBufferPointer { pu in
                        w[1].withUnsafeBufferPointer { pw in
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, px.baseAddress, k, pw.baseAddress, n, 0, pu.baseAddress, n)
                        }
                    }
                }
                y.withUnsafeMutableBufferPointer { py in
                    w[matrices - 1].withUnsafeBufferPointer { pw in
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, k, n, 1, ph.baseAddress, n, pw.baseAddress, k, 0, py.baseAddress, k)
                    }
                }
            }
        }
    }
}
