import Testing
@testable import MoESim

@Suite struct NumericsTests {
    /// The FFN by triple loops, in Double: the reference the BLAS path must match.
    static func naive(_ e: ExpertFFN, _ x: [Float], tokens: Int) -> [Float] {
        func matmul(_ a: [Double], _ b: [Float], m: Int, n: Int, k: Int) -> [Double] {
            var c = [Double](repeating: 0, count: m * n)
            for i in 0..<m { for j in 0..<n { var s = 0.0; for t in 0..<k { s += a[i * k + t] * Double(b[t * n + j]) }; c[i * n + j] = s } }
            return c
        }
        let xd = x.map(Double.init)
        var h = matmul(xd, e.weights[0], m: tokens, n: e.ffn, k: e.hidden)
        if e.matrices == 3 {
            let u = matmul(xd, e.weights[1], m: tokens, n: e.ffn, k: e.hidden)
            for i in h.indices { h[i] = h[i] / (1 + exp(-h[i])) * u[i] }
        } else {
            for i in h.indices { h[i] = max(0, h[i]) }
        }
        return matmul(h, e.weights[e.matrices - 1], m: tokens, n: e.hidden, k: e.ffn).map(Float.init)
    }

    static func input(_ n: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in Float(rng.nextDouble() * 2 - 1) }
    }

    @Test(arguments: [(3, 1), (3, 5), (2, 3)])
    func blasFFNMatchesTheNaiveLoops(matrices: Int, tokens: Int) {
        let e = ExpertFFN(hidden: 48, ffn: 80, matrices: matrices, seed: 11)
        let x = Self.input(tokens * 48, seed: 3)
        let fast = e.forward(x, tokens: tokens), slow = Self.naive(e, x, tokens: tokens)
        let scale = slow.map(abs).max()!
        #expect(scale > 0)
        #expect(zip(fast, slow).allSatisfy { abs($0 - $1) <= 1e-4 * max(1, scale) })
    }

    @Test func quantisationErrorGrowsAsBitsFallAndStaysWithinItsBound() {
        var rng = SplitMix64(seed: 5)
        let w = (0..<4096).map { _ in Float(rng.nextDouble() * 2 - 1) * (rng.nextDouble() < 0.05 ? 4 : 1) }
        var errors: [Float] = []
        for bits in [8, 4, 2] {
            let q = QuantizedWeights(w, bits: bits, groupSize: 64)
            let back = q.dequantized()
            for i in w.indices {
                let bound = q.scales[i / 64] / 2 * (1 + 1e-5)
                #expect(abs(w[i] - back[i]) <= bound, "\(bits) bits: weight \(i)")
            }
            errors.append(zip(w, back).map { ($0 - $1) * ($0 - $1) }.reduce(0, +))
            #expect(q.codes.allSatisfy { abs(Int($0)) <= q.qmax })
            // Dequantised weights are fixed points: quantising them again changes nothing.
            #expect(QuantizedWeights(back, bits: bits, groupSize: 64).dequantized() == back)
        }
        #expect(errors[0] < errors[1] && errors[1] < errors[2], "int8 < int4 < int2 error: \(errors)")
        #expect(QuantizedWeights(w, bits: 4, groupSize: 64).packedBytes == 4096 / 2 + 2 * 64)
    }

    /// The quantiser's fast path against the scheme as docs/numerics.md writes it, in plain Swift (libm's
    /// rounding), over random groups, exact ties and values next to them, a zero group and a ragged last group.
    @Test func quantisationMatchesTheDocumentedSchemeBitForBit() {
        func reference(_ w: [Float], bits: Int, groupSize: Int) -> [Float] {
            let qmax = Float((1 << (bits - 1)) - 1)
            var out: [Float] = []
            for start in stride(from: 0, to: w.count, by: groupSize) {
                let group = w[start..<min(start + groupSize, w.count)]
                let peak = group.map { abs($0) }.max()!
                let scale = peak > 0 ? peak / qmax : 1
                out += group.map { Float(Int8(max(-qmax, min(qmax, ($0 / scale).rounded())))) * scale }
            }
            return out
        }
        var rng = SplitMix64(seed: 11)
        for bits in [8, 4, 2] {
            let qmax = Float((1 << (bits - 1)) - 1)
            // Ties: a group whose peak is qmax makes the scale 1, so w / scale is the value itself.
            let ties: [Float] = [qmax, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.5, -3.5, 6.5, -6.5, 0.49999997, -0.49999997, 0.50000006, -0.0]
            var w = ties.filter { abs($0) <= qmax }
            w += [Float](repeating: 0, count: 32 - w.count)  // the rest of the first group, and a zero group
            w += (0..<3000).map { _ in Float(rng.nextDouble() * 2 - 1) * (rng.nextDouble() < 0.05 ? 9 : 1) }
            let fast = QuantizedWeights.roundTrip(w, bits: bits, groupSize: 16)
            let expected = reference(w, bits: bits, groupSize: 16)
            #expect(fast.map(\.bitPattern) == expected.map(\.bitPattern), "\(bits) bits")
            #expect(QuantizedWeights(w, bits: bits, groupSize: 16).dequantized().map(\.bitPattern) == expected.map(\.bitPattern))
        }
        for x: Float in [0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.5, -3.5, 126.5, -126.5, 0.49999997, 3.4999998, -7.5000005, 0, -0.0, 99.25, 6.9999995] {
            #expect(QuantizedWeights.roundedHalfAwayFromZero(x) == x.rounded(), "\(x)")
        }
    }

    @Test func lowPrecisionExpertsDriftFromTheReferenceInOrder() {
        let e = ExpertFFN(hidden: 64, ffn: 128, matrices: 3, seed: 2)
        let x = Self.input(4 * 64, seed: 9)
        let reference = e.forward(x, tokens: 4)
        func relativeError(_ bits: Int) -> Float {
            let y = e.quantized(bits: bits, groupSize: 32).forward(x, tokens: 4)
            let num = zip(y, reference).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
            return (num / reference.map { $0 * $0 }.reduce(0, +)).squareRoot()
        }
        let (e8, e4, e2) = (relativeError(8), relativeError(4), relativeError(2))
        #expect(e8 < e4 && e4 < e2)
        // At 2 bits a weight keeps only its sign or zero: the output error is of the order of the output itself.
        #expect(e8 < 0.02 && e4 < 0.3 && e2 < 2, "int8 \(e8), int4 \(e4), int2 \(e2)")
    }
}

#if canImport(Glibc)
import Glibc
#endif
