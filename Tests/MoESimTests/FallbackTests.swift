import Foundation
import Testing
@testable import MoESim

/// mixed-precision (HOBBIT), cpu-fallback (Fiddler), numerics mode and host calibration.
@Suite struct FallbackTests {
    static let seeds: [UInt64] = propertySeeds(8)
    static let model = tinyModel(layers: 4, experts: 16, topK: 2)
    static func trace(_ seed: UInt64) -> RoutingTrace {
        zipfTrace(seed: seed, layers: 4, experts: 16, topK: 2, tokens: 100, skew: 0.6, prefill: seed % 2 == 0 ? 0 : 5)
    }

    func run(_ trace: RoutingTrace, _ policy: PolicyKind, budget: Budget = .experts(12),
             precision: PrecisionOptions = PrecisionOptions(), hardware: HardwareProfile = tinyHardware(),
             numerics: NumericsOptions? = nil) throws -> ReplayResult {
        let spec = ReplaySpec(model: Self.model, hardware: hardware, policy: policy, budget: budget, precision: precision)
        let plan = StepPlan(trace)
        if let numerics { return try NumericsRun.replay(trace: trace, plan: plan, spec: spec, options: numerics) }
        return try Replayer.run(plan: plan, traceName: trace.name, spec: spec)
    }

    @Test(arguments: seeds)
    func mixedPrecisionCopiesFewerBytesThanLRU(seed: UInt64) throws {
        let trace = Self.trace(seed)
        for budget in [Budget.experts(10), .experts(12), .experts(24)] {
            let lru = try run(trace, .lru, budget: budget), mixed = try run(trace, .mixedPrecision, budget: budget)
            #expect(mixed.counters.bytesH2D < lru.counters.bytesH2D, "seed \(seed) \(budget)")
            #expect(mixed.counters.bytesSaved > 0)
            let share = try #require(mixed.lowPrecisionShare)
            #expect(share > 0 && share < 1)
        }
    }

    @Test(arguments: seeds)
    func thresholdZeroIsLRUWithNoError(seed: UInt64) throws {
        let trace = Self.trace(seed)
        let numerics = NumericsOptions(scale: 4)
        let lru = try run(trace, .lru, numerics: numerics)
        let mixed = try run(trace, .mixedPrecision, precision: PrecisionOptions(threshold: 0), numerics: numerics)
        #expect(mixed.counters == lru.counters)
        #expect(mixed.lowPrecisionShare == 0)
        let n = try #require(mixed.numerics)
        #expect(n.relErrorMean == 0 && n.relErrorP99 == 0 && n.cosineMin == 1)
        #expect(n.samples == trace.tokenCount * trace.header.layers - trace.missingCells)
    }

    @Test func fullPrecisionStrategiesHaveNoOutputError() throws {
        let trace = Self.trace(3)
        for policy in [PolicyKind.onDemand, .lru, .belady, .pregated, .cpuFallback, .allResident] {
            let n = try #require(try run(trace, policy, numerics: NumericsOptions(scale: 4)).numerics)
            #expect(n.relErrorMean == 0 && n.relErrorP99 == 0 && n.cosineMin == 1, "\(policy)")
        }
    }

    @Test func everythingInLowPrecisionErrsMoreWithFewerBits() throws {
        let trace = Self.trace(5)
        var errors: [Double] = []
        for bits in [8, 4, 2] {
            // A threshold above every gate weight: every copy is low precision, so every access is computed low.
            let r = try run(trace, .mixedPrecision, precision: PrecisionOptions(threshold: 2, lowBits: bits),
                            numerics: NumericsOptions(scale: 1))
            #expect(r.lowPrecisionShare.map { abs($0 - 1) < 1e-9 } == true, "int\(bits): share \(String(describing: r.lowPrecisionShare))")
            let n = try #require(r.numerics)
            #expect(n.relErrorMean > 0 && n.relErrorP99 >= n.relErrorMean && n.cosineMin < 1)
            errors.append(n.relErrorMean)
        }
        #expect(errors[0] < errors[1] && errors[1] < errors[2], "int8 < int4 < int2: \(errors)")
        #expect(errors[0] < 0.02, "int8 output error \(errors[0])")
    }

    @Test(arguments: seeds)
    func upgradingLowHitsComputesLessInLowPrecision(seed: UInt64) throws {
        let trace = Self.trace(seed)
        let accept = try run(trace, .mixedPrecision, precision: PrecisionOptions(threshold: 0.4, lowHit: .accept))
        let upgrade = try run(trace, .mixedPrecision, precision: PrecisionOptions(threshold: 0.4, lowHit: .upgrade))
        #expect(try #require(upgrade.lowPrecisionShare) <= (try #require(accept.lowPrecisionShare)))
        #expect(upgrade.counters.peakExpertBytes <= 12 * Self.model.expertBytes)
    }

    @Test func mixedPrecisionNeedsGateWeights() throws {
        let trace = makeTrace([[[0, 1], [2, 3]]], experts: 4, topK: 2)
        let spec = ReplaySpec(model: tinyModel(), hardware: tinyHardware(), policy: .mixedPrecision, budget: .share(1))
        #expect(throws: ConfigError.self) { try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: spec) }
    }

    @Test(arguments: seeds)
    func cpuFallbackFollowsTheFasterSide(seed: UInt64) throws {
        let trace = Self.trace(seed)
        // A host far slower than the link: nothing runs on the CPU.
        var slowHost = tinyHardware()
        slowHost.hostFlops = 1e3; slowHost.hostBytesPerSecond = 1e3
        let slow = try run(trace, .cpuFallback, hardware: slowHost)
        #expect(slow.counters.cpuExperts == 0 && slow.counters.bytesSaved == 0 && slow.counters.cpuNanoseconds == 0)
        // A host far faster: every miss runs on the CPU, nothing is copied, and it beats LRU.
        var fastHost = tinyHardware()
        fastHost.hostFlops = 1e18; fastHost.hostBytesPerSecond = 1e18
        let fast = try run(trace, .cpuFallback, hardware: fastHost)
        #expect(fast.counters.cpuExperts == fast.counters.misses && fast.counters.misses > 0)
        #expect(fast.counters.bytesH2D == 0 && fast.counters.bytesSaved == fast.counters.misses * Self.model.expertBytes)
        #expect(fast.simSeconds < (try run(trace, .lru, hardware: fastHost)).simSeconds)
        // The placement holds the most used experts: as many as the budget.
        #expect(fast.counters.peakExpertBytes == 12 * Self.model.expertBytes)
    }

    @Test func cpuTimeIsTheHostRoofline() throws {
        let trace = makeTrace([[[0, 1], [2, 3]], [[0, 2], [1, 3]]], experts: 4, topK: 2, phases: [.decode, .decode])
        var host = tinyHardware()
        host.hostFlops = 1e15; host.hostBytesPerSecond = 1e12  // memory-bound: bytes / bandwidth per expert
        let model = tinyModel()
        let spec = ReplaySpec(model: model, hardware: host, policy: .cpuFallback, budget: .experts(2))
        let r = try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: spec)
        let perExpert = SimTime(seconds: Double(model.expertBytes) / 1e12).nanoseconds
        #expect(r.counters.cpuExperts > 0)
        #expect(r.counters.cpuNanoseconds == Int64(r.counters.cpuExperts) * perExpert)
    }

    @Test func numericsIsDeterministicAndSamplesMatchTheSummary() throws {
        let trace = Self.trace(2)
        let spec = ReplaySpec(model: Self.model, hardware: tinyHardware(), policy: .mixedPrecision, budget: .experts(10))
        var samples: [NumericsSample] = []
        let a = try NumericsRun.replay(trace: trace, plan: StepPlan(trace), spec: spec, options: NumericsOptions(scale: 2),
                                       perSample: { samples.append($0) })
        let b = try NumericsRun.replay(trace: trace, plan: StepPlan(trace), spec: spec, options: NumericsOptions(scale: 2))
        #expect(a.numerics == b.numerics)
        let n = try #require(a.numerics)
        #expect(samples.count == n.samples)
        #expect(abs(samples.map(\.relError).reduce(0, +) / Double(samples.count) - n.relErrorMean) < 1e-12)
        #expect(samples.map(\.cosine).min() == n.cosineMin)
        // Tokens with no low-precision expert are exact.
        #expect(samples.filter { $0.lowExperts == 0 }.allSatisfy { $0.relError == 0 && $0.cosine == 1 })
        #expect(samples.contains { $0.lowExperts > 0 && $0.relError > 0 })
    }

    /// Layers evaluated at once merge in layer order: one worker and several give the same figures and the same
    /// samples in the same order (the order the per-token CSV is written in).
    @Test func numericsGivesTheSameAnswerOnAnyNumberOfWorkers() throws {
        let (trace, plan, log, run) = try Self.numericsSetUp(seed: 3)
        var one: [NumericsSample] = [], three: [NumericsSample] = []
        let a = run.evaluate(trace: trace, plan: plan, precisionLog: log, workers: 1, perSample: { one.append($0) })
        let b = run.evaluate(trace: trace, plan: plan, precisionLog: log, workers: 3, perSample: { three.append($0) })
        #expect(a == b)
        #expect(one == three)
        #expect(one.map(\.layer) == one.map(\.layer).sorted(), "layer by layer")
        #expect(Set(one.map(\.layer)).count == 4)
    }

    /// Evaluations that overlap in one process (as tests and library users run them) each give what they give
    /// alone: the one-thread setting holds until the last of them ends.
    @Test func overlappingNumericsAgreeWithARunAlone() throws {
        let (trace, plan, log, run) = try Self.numericsSetUp(seed: 4)
        let alone = run.evaluate(trace: trace, plan: plan, precisionLog: log)
        let results = OverlapResults(count: 4)
        for _ in 0..<3 {
            DispatchQueue.concurrentPerform(iterations: 4) { i in
                results.put(i, run.evaluate(trace: trace, plan: plan, precisionLog: log, workers: 1 + i % 2))
            }
            #expect(results.all.allSatisfy { $0 == alone })
        }
    }

    /// The scope by hand, over a setting of its own: one thread from the first entry to the last exit, then the
    /// setting before, over every order of two overlapping evaluations.
    @Test func theOneThreadScopeRestoresAfterTheLastExit() {
        for order in [[0, 1, 0, 1], [0, 1, 1, 0], [0, 0, 1, 1]] {  // 0 enters or leaves A, 1 B; first sight enters
            var setting = 6
            let scope = OneThreadScope(get: { setting }, set: { setting = $0 })
            var inside = Set<Int>()
            for who in order {
                if inside.insert(who).inserted { scope.enter() } else { inside.remove(who); scope.leave() }
                #expect(setting == (inside.isEmpty ? 6 : 1), "\(order)")
            }
        }
    }

    /// A mixed-precision replay of seed `seed`'s trace with its precision log, and numerics at half size.
    static func numericsSetUp(seed: UInt64) throws -> (RoutingTrace, StepPlan, [AccessPrecision], NumericsRun) {
        let trace = Self.trace(seed), plan = StepPlan(trace)
        let spec = ReplaySpec(model: Self.model, hardware: tinyHardware(), policy: .mixedPrecision, budget: .experts(10))
        let replay = try Replayer.run(plan: plan, traceName: trace.name, spec: spec, recordPrecision: true)
        return (trace, plan, replay.precisionLog, NumericsRun(model: Self.model, precision: spec.precision, options: NumericsOptions(scale: 2)))
    }

    final class OverlapResults: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [NumericsSummary?]
        init(count: Int) { values = Array(repeating: nil, count: count) }
        func put(_ i: Int, _ v: NumericsSummary) { lock.lock(); values[i] = v; lock.unlock() }
        var all: [NumericsSummary] { lock.lock(); defer { lock.unlock() }; return values.compactMap { $0 } }
    }

    @Test func calibrationFitRecoversARoofline() {
        let params = 1_000_000, flops = 5e10, bandwidth = 2e10
        let timed = [1, 4, 16, 64, 256].map { n in (n, max(2 * Double(n) * Double(params) / flops, Double(params * 4) / bandwidth)) }
        let cal = HostCalibration(params: params, hidden: 100, ffn: 3333, threads: 1, timed: timed)
        #expect(abs(cal.hostFlops - flops) / flops < 1e-12)
        #expect(abs(cal.hostBytesPerSecond - bandwidth) / bandwidth < 1e-12)
        #expect(cal.points.allSatisfy { abs($0.fittedSeconds - $0.seconds) <= 1e-15 })
    }

    @Test func aCalibratedProfileFileIsUsableFromAConfig() throws {
        let dir = temporaryDirectory()
        let cal = HostCalibration(params: 1000, hidden: 10, ffn: 33, threads: 1, timed: [(1, 1e-6), (64, 2e-5)])
        let base = try HardwareProfile.preset("a100-80gb-pcie")
        try AtomicFileSink.write(cal.profileYAML(base: base, name: "a100+host", note: "test"), to: dir + "/host.yaml")
        let config = try RunConfig.parse("""
            trace: t.jsonl
            model: mixtral-8x7b
            hardware: host.yaml
            budget: 25%
            """, path: dir + "/run.yaml")
        #expect(config.hardware.name == "a100+host")
        #expect(config.hardware.hostFlops == cal.hostFlops.rounded())
        #expect(config.hardware.linkBytesPerSecond == base.linkBytesPerSecond)
        // A bad key in the profile file names that file and line.
        try AtomicFileSink.write("preset: a100-80gb-pcie\nhost_flop: 1e12\n", to: dir + "/bad.yaml")
        #expect {
            _ = try RunConfig.parse("trace: t.jsonl\nmodel: mixtral-8x7b\nhardware: bad.yaml\nbudget: 25%\n", path: dir + "/run.yaml")
        } throws: { error in
            "\(error)".contains("bad.yaml:2") && "\(error)".contains("host_flops")
        }
    }

    @Test func precisionOptionsAreCheckedInConfigsAndAxes() throws {
        let base = "trace: t.jsonl\nmodel: mixtral-8x7b\nhardware: a100-80gb-pcie\nbudget: 25%\n"
        let ok = try RunConfig.parse(base + "precision: {threshold: 0.2, low_bits: 2, low_hit: upgrade}\n", path: "c.yaml")
        #expect(ok.precision == PrecisionOptions(threshold: 0.2, lowBits: 2, lowHit: .upgrade))
        #expect { _ = try RunConfig.parse(base + "precision: {low_bits: 3}\n", path: "c.yaml") } throws: { "\($0)".contains("c.yaml:5") }
        #expect { _ = try RunConfig.parse(base + "precision: {treshold: 0.2}\n", path: "c.yaml") } throws: {
            "\($0)".contains("precision.threshold")
        }
        var spec = ReplaySpec(model: Self.model, hardware: tinyHardware(), policy: .mixedPrecision, budget: .share(0.5))
        try SweepConfig.apply("precision.threshold", "0.7", to: &spec)
        #expect(spec.precision.threshold == 0.7)
    }
}
