import CMalloc
import Foundation

/// Settings of numerics mode (`--numerics`).
public struct NumericsOptions: Sendable, Equatable {
    /// Hidden and FFN sizes are the profile's divided by this (1: full size). Relative quantisation error depends
    /// on the weight distribution and group size, not on the matrix size, so a scale-down keeps it.
    public var scale = 16
    /// Seed of the synthetic weights and hidden states.
    public var seed: UInt64 = 1
    /// Most bytes of fp32 expert weights held at once; evicted experts are regenerated from their seed.
    public var memoryCapBytes = 512 << 20

    public init(scale: Int = 16, seed: UInt64 = 1, memoryCapBytes: Int = 512 << 20) {
        self.scale = scale; self.seed = seed; self.memoryCapBytes = memoryCapBytes
    }

    public func validate() throws {
        if scale < 1 { throw ConfigError.invalidValue(field: "numerics-scale", value: "\(scale)", expected: "1 or more") }
    }
}

/// What numerics mode measured over every (token, layer) of a replay (docs/metrics.md).
public struct NumericsSummary: Sendable, Equatable {
    /// (token, layer) outputs compared.
    public var samples = 0
    public var relErrorMean = 0.0
    public var relErrorP99 = 0.0
    public var cosineMin = 1.0
}

/// One (token, layer) comparison, for the per-token CSV.
public struct NumericsSample: Sendable, Equatable {
    public static let header = ["step", "seq", "pos", "layer", "low_experts", "cpu_experts", "rel_error", "cosine"]
    public var step: Int, seq: Int, pos: Int, layer: Int
    public var lowExperts: Int, cpuExperts: Int
    public var relError: Double, cosine: Double

    public var row: [String] {
        ["\(step)", "\(seq)", "\(pos)", "\(layer)", "\(lowExperts)", "\(cpuExperts)", "\(relError)", "\(cosine)"]
    }
}

/// Computes each layer's real MoE output, `y = Σ_k w_k · FFN_k(x)`, for every token of a replay with the precision
/// the strategy chose for each expert, and the fp32 reference, with OpenBLAS (SIMULATION.md, Real numerics).
///
///     let result = try Replayer.run(plan: plan, traceName: name, spec: spec, recordPrecision: true)
///     let summary = NumericsRun(model: spec.model, precision: spec.precision, options: .init())
///         .evaluate(trace: trace, plan: plan, precisionLog: result.precisionLog)
///
/// Hidden states are seeded per (token, layer), so layers are compared one at a time (the error does not
/// compound through the network). Experts computed on the CPU run in fp32: their error is zero. An output equal
/// to its reference bit for bit has error 0 and cosine 1 exactly, so full-precision strategies report no error.
public struct NumericsRun: Sendable {
    public let hidden: Int
    public let ffn: Int
    let matrices: Int
    let precision: PrecisionOptions
    let options: NumericsOptions

    public init(model: ModelProfile, precision: PrecisionOptions, options: NumericsOptions) {
        hidden = max(1, model.hidden / options.scale)
        ffn = max(1, model.expertFFN / options.scale)
        matrices = model.matrices
        self.precision = precision
        self.options = options
    }

    /// - Parameter perSample: called for every (token, layer), layer by layer and in trace order within a layer
    ///   (the per-token CSV).
    ///
    /// Layer by layer, and within a layer in chunks of steps, so that only one layer's experts are held and each
    /// expert runs one sgemm over every token of the chunk routed to it (hidden states are independent per token).
    /// Layers are independent, so `workers` of them run at once (one per core by default), each sgemm on one
    /// OpenBLAS thread; their results are merged in layer order, so the figures do not depend on the core count.
    public func evaluate(trace: RoutingTrace, plan: StepPlan, precisionLog: [AccessPrecision],
                         workers: Int = ProcessInfo.processInfo.activeProcessorCount,
                         perSample: ((NumericsSample) -> Void)? = nil) -> NumericsSummary {
        precondition(precisionLog.count == plan.accesses, "numerics needs the replay's precision log")
        let steps = StepIndex(plan), workers = max(1, min(workers, plan.layers))
        // As large as one weight matrix (so a draw repeats no sample), between 2^16 and 2^22 samples.
        let log2Size = min(22, max(16, Int.bitWidth - (hidden * ffn - 1).leadingZeroBitCount))
        let pool = GaussianPool(log2Size: log2Size, seed: options.seed)
        _ = NumericsRun.keepsFreedMemory
        // BLAS threads would only contend with the layers' own (and spin idle between the small calls).
        return HostCalibration.withOneThread {
            evaluateLayers(trace: trace, plan: plan, precisionLog: precisionLog, workers: workers, steps: steps, pool: pool,
                           perSample: perSample)
        }
    }

    private func evaluateLayers(trace: RoutingTrace, plan: StepPlan, precisionLog: [AccessPrecision], workers: Int,
                                steps: StepIndex, pool: GaussianPool, perSample: ((NumericsSample) -> Void)?) -> NumericsSummary {
        let L = plan.layers
        var errors: [Double] = []
        errors.reserveCapacity(trace.tokenCount * L)
        var cosineMin = 1.0
        let slots = LayerSlots(count: workers), keepSamples = perSample != nil, bankBytes = options.memoryCapBytes / workers
        for wave in stride(from: 0, to: L, by: workers) {  // a wave at a time: samples of `workers` layers held at most
            let count = min(workers, L - wave)
            DispatchQueue.concurrentPerform(iterations: count) { i in
                slots.put(i, evaluateLayer(wave + i, trace: trace, plan: plan, steps: steps, precisionLog: precisionLog,
                                           pool: pool, bankBytes: bankBytes, keepSamples: keepSamples))
            }
            for i in 0..<count {
                let layer = slots.take(i)
                errors += layer.errors
                cosineMin = min(cosineMin, layer.cosineMin)
                if let perSample { layer.samples.forEach(perSample) }
            }
        }
        guard let p99 = nearestRankPercentile(errors, 0.99) else { return NumericsSummary() }
        return NumericsSummary(samples: errors.count, relErrorMean: errors.reduce(0, +) / Double(errors.count),
                               relErrorP99: p99, cosineMin: cosineMin)
    }

    /// Numerics allocates and frees arrays of megabytes per expert and chunk; glibc hands each back to the kernel
    /// (they are above its mmap threshold) and the next one faults its pages in again: 1.2 s of system time in a
    /// 2.5 s run. Once per process, freed memory up to these sizes is kept for reuse instead (the peak is the same).
    static let keepsFreedMemory: Bool = {
        mallopt(M_MMAP_THRESHOLD, 256 << 20)
        mallopt(M_TRIM_THRESHOLD, 512 << 20)
        return true
    }()

    /// One result per worker of a wave: each worker writes only its own slot, and the caller reads them once the
    /// wave is done.
    final class LayerSlots: @unchecked Sendable {
        private let slots: UnsafeMutableBufferPointer<LayerNumerics?>
        init(count: Int) { slots = .allocate(capacity: count); slots.initialize(repeating: nil) }
        deinit { _ = slots.deinitialize(); slots.deallocate() }
        func put(_ i: Int, _ layer: LayerNumerics) { slots[i] = layer }
        func take(_ i: Int) -> LayerNumerics { defer { slots[i] = nil }; return slots[i]! }
    }

    /// One layer's comparisons, in trace order.
    struct LayerNumerics {
        var errors: [Double] = []
        var cosineMin = 1.0
        var samples: [NumericsSample] = []
    }

    func evaluateLayer(_ l: Int, trace: RoutingTrace, plan: StepPlan, steps: StepIndex, precisionLog: [AccessPrecision],
                       pool: GaussianPool, bankBytes: Int, keepSamples: Bool) -> LayerNumerics {
        let L = plan.layers, K = trace.header.topK
        let bank = ExpertBank(run: self, pool: pool, capBytes: bankBytes)  // this layer's experts only
        var result = LayerNumerics()
        var t0 = 0
        while t0 < trace.tokenCount {
            let t1 = steps.chunkEnd(from: t0, tokens: 2048)
            let routes = ChunkRoutes(trace: trace, plan: plan, steps: steps, precisionLog: precisionLog, layer: l, tokens: t0..<t1)
            let (served, reference) = outputs(routes, layer: l, bank: bank)
            for i in 0..<(t1 - t0) {
                let token = t0 + i
                if trace.experts[(token * L + l) * K] == TokenRecord.missing { continue }
                let row = (i * hidden)..<((i + 1) * hidden)
                let (error, cosine) = compare(served[row], reference[row])
                result.errors.append(error)
                result.cosineMin = min(result.cosineMin, cosine)
                if keepSamples {
                    result.samples.append(NumericsSample(
                        step: Int(steps.stepOfToken[token]), seq: Int(trace.seq[token]), pos: Int(trace.pos[token]),
                        layer: l, lowExperts: routes.lowCount[i], cpuExperts: routes.cpuCount[i], relError: error,
                        cosine: cosine))
                }
            }
            t0 = t1
        }
        return result
    }

    /// The layer's MoE output for every token of a chunk, as served and in fp32 (row-major, tokens × hidden):
    /// each expert runs once over all its tokens in fp32, and once more over those it served in low precision.
    func outputs(_ routes: ChunkRoutes, layer: Int, bank: ExpertBank) -> (served: [Double], reference: [Double]) {
        var reference = [Double](repeating: 0, count: routes.tokens.count * hidden), served = reference
        for (e, expert) in routes.byExpert.enumerated() where !expert.rows.isEmpty {
            var x = [Float]()
            x.reserveCapacity(expert.rows.count * hidden)
            for r in expert.rows { x += hiddenState(token: routes.tokens.lowerBound + r, layer: layer) }
            let flat = layer * routes.byExpert.count + e
            let full = bank.expert(flat, low: false).forward(x, tokens: expert.rows.count)
            let lowIndices = expert.low.indices.filter { expert.low[$0] }
            var lowOut: [Float] = []
            if !lowIndices.isEmpty {
                var xl = [Float]()
                xl.reserveCapacity(lowIndices.count * hidden)
                for r in lowIndices { xl += x[(r * hidden)..<((r + 1) * hidden)] }
                lowOut = bank.expert(flat, low: true).forward(xl, tokens: lowIndices.count)
            }
            var nextLow = 0
            for (r, row) in expert.rows.enumerated() {
                let g = expert.gates[r], out = row * hidden
                if expert.skipped[r] {  // not computed: missing from the served output (other weights kept as they are)
                    for h in 0..<hidden { reference[out + h] += g * Double(full[r * hidden + h]) }
                    continue
                }
                let (used, base) = expert.low[r] ? (lowOut, nextLow * hidden) : (full, r * hidden)
                for h in 0..<hidden {
                    reference[out + h] += g * Double(full[r * hidden + h])
                    served[out + h] += g * Double(used[base + h])
                }
                if expert.low[r] { nextLow += 1 }
            }
        }
        return (served, reference)
    }

    /// ‖y − ref‖ / ‖ref‖ and the cosine of the angle between them; exactly (0, 1) when they are equal.
    func compare(_ y: ArraySlice<Double>, _ ref: ArraySlice<Double>) -> (Double, Double) {
        if y.elementsEqual(ref) { return (0, 1) }
        var diff = 0.0, dot = 0.0, yy = 0.0, rr = 0.0
        for (a, b) in zip(y, ref) {
            diff += (a - b) * (a - b); dot += a * b; yy += a * a; rr += b * b
        }
        let error = rr > 0 ? (diff / rr).squareRoot() : (diff > 0 ? .infinity : 0)
        let cosine = yy > 0 && rr > 0 ? dot / (yy.squareRoot() * rr.squareRoot()) : 0
        return (error, cosine)
    }

    /// The seeded input of `token` at `layer`: N(0, 1) per element.
    func hiddenState(token: Int, layer: Int) -> [Float] {
        var rng = SplitMix64(seed: options.seed ^ (UInt64(token) &* 0x9E37_79B9) ^ (UInt64(layer) << 48) ^ 0x5EED)
        return rng.gaussians(hidden)
    }
}

/// Which step each token belongs to, and where each step starts.
struct StepIndex {
    let stepOfToken: [Int32]
    let firstTokenOfStep: [Int]
    let plan: StepPlan

    init(_ plan: StepPlan) {
        var stepOfToken: [Int32] = [], first: [Int] = []
        for s in 0..<plan.steps {
            first.append(stepOfToken.count)
            stepOfToken += Array(repeating: Int32(s), count: Int(plan.stepTokens[s]))
        }
        self.stepOfToken = stepOfToken; firstTokenOfStep = first; self.plan = plan
    }

    /// The end of a chunk of whole steps starting at token `t0`: about `tokens` tokens, at least one step.
    func chunkEnd(from t0: Int, tokens: Int) -> Int {
        let count = stepOfToken.count
        var t1 = min(count, t0 + tokens)
        if t1 < count { t1 = firstTokenOfStep[Int(stepOfToken[t1])] }
        if t1 <= t0 { t1 = firstTokenOfStep[Int(stepOfToken[t0])] + Int(plan.stepTokens[Int(stepOfToken[t0])]) }
        return t1
    }
}

/// A chunk's routing at one layer, per expert: the tokens routed to it (rows within the chunk), their gate weights
/// (1/k without weights), and whether the strategy served it in low precision for that token's step.
struct ChunkRoutes {
    struct Expert { var rows: [Int] = [], gates: [Double] = [], low: [Bool] = [], skipped: [Bool] = [] }
    let tokens: Range<Int>
    private(set) var byExpert: [Expert]
    /// Per token of the chunk: its experts served in low precision, and on the CPU.
    private(set) var lowCount: [Int], cpuCount: [Int]

    init(trace: RoutingTrace, plan: StepPlan, steps: StepIndex, precisionLog: [AccessPrecision], layer l: Int,
         tokens: Range<Int>) {
        let L = plan.layers, E = plan.experts, K = trace.header.topK
        self.tokens = tokens
        byExpert = Array(repeating: Expert(), count: E)
        lowCount = Array(repeating: 0, count: tokens.count)
        cpuCount = lowCount
        var kindOf = [AccessPrecision](repeating: .full, count: E)
        var t = tokens.lowerBound
        while t < tokens.upperBound {
            let s = Int(steps.stepOfToken[t])
            for a in plan.accessRange(step: s, layer: l) { kindOf[Int(plan.accessExpert[a]) % E] = precisionLog[a] }
            let end = steps.firstTokenOfStep[s] + Int(plan.stepTokens[s])
            for token in t..<end {
                let base = (token * L + l) * K, row = token - tokens.lowerBound
                if trace.experts[base] == TokenRecord.missing { continue }
                for j in 0..<K {
                    let e = Int(trace.experts[base + j]), kind = kindOf[e]
                    byExpert[e].rows.append(row)
                    byExpert[e].gates.append(trace.hasWeights ? Double(trace.weights[base + j]) : 1 / Double(K))
                    byExpert[e].low.append(kind == .low)
                    byExpert[e].skipped.append(kind == .skipped)
                    if kind == .low { lowCount[row] += 1 } else if kind == .cpu { cpuCount[row] += 1 }
                }
            }
            t = end
        }
    }
}

/// Expert weights made on first use and held under a byte cap (oldest dropped first; they regenerate from the
/// seed, so dropping changes nothing but time).
final class ExpertBank {
    let run: NumericsRun
    let pool: GaussianPool
    private var held: [Int: ExpertFFN] = [:]
    private var order: [Int] = []
    private var heldBytes = 0
    private let capBytes: Int

    init(run: NumericsRun, pool: GaussianPool, capBytes: Int) { self.run = run; self.pool = pool; self.capBytes = capBytes }

    /// Expert `flat` in full precision, or its dequantised low-precision version.
    func expert(_ flat: Int, low: Bool) -> ExpertFFN {
        let key = flat * 2 + (low ? 1 : 0)
        if let e = held[key] { return e }
        let made: ExpertFFN
        if low {
            made = expert(flat, low: false).quantized(bits: run.precision.lowBits, groupSize: run.precision.groupSize)
        } else {
            made = ExpertFFN(hidden: run.hidden, ffn: run.ffn, matrices: run.matrices, pool: pool,
                             seed: run.options.seed &+ UInt64(flat) &* 0x2545_F491_4F6C_DD1D)
        }
        let bytes = run.matrices * run.hidden * run.ffn * MemoryLayout<Float>.size
        while heldBytes + bytes > capBytes, !order.isEmpty {
            held[order.removeFirst()] = nil
            heldBytes -= bytes
        }
        held[key] = made
        order.append(key)
        heldBytes += bytes
        return made
    }
}

extension NumericsRun {
    /// Replays `spec` recording each access's precision, then measures the output error: what `--numerics` runs.
    public static func replay(trace: RoutingTrace, plan: StepPlan, spec: ReplaySpec, options: NumericsOptions,
                              perSample: ((NumericsSample) -> Void)? = nil) throws -> ReplayResult {
        try options.validate()
        var result = try Replayer.run(plan: plan, traceName: trace.name, spec: spec, recordPrecision: true)
        result.numerics = NumericsRun(model: spec.model, precision: spec.precision, options: options)
            .evaluate(trace: trace, plan: plan, precisionLog: result.precisionLog, perSample: perSample)
        result.precisionLog = []
        return result
    }
}
