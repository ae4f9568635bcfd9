import Foundation
import Testing
@testable import MoESim

/// `skip` and `mixed-skip`: misses of low-gate-weight experts are not computed (HOBBIT, AdapMoE).
@Suite struct SkipTests {
    static let seeds: [UInt64] = propertySeeds(8)
    let fallback = FallbackTests()

    func precision(skip: Double, low: Double = 0.3) -> PrecisionOptions {
        var p = PrecisionOptions(threshold: low)
        p.skipThreshold = skip
        return p
    }

    @Test(arguments: seeds)
    func skipAtThresholdZeroIsLRUByteForByte(seed: UInt64) throws {
        let trace = FallbackTests.trace(seed)
        let lru = try fallback.run(trace, .lru), skip = try fallback.run(trace, .skip, precision: precision(skip: 0))
        let differ = Metric.allCases.filter { $0.cell(lru) != $0.cell(skip) }
        #expect(differ == [.policy, .skipThreshold], "seed \(seed): \(differ)")
        #expect(skip.counters.skippedExperts == 0)
    }

    /// Over seeds: a higher threshold skips more, copies fewer bytes, and (with --numerics) moves the output
    /// further from the reference; a skipped expert is never copied.
    @Test(arguments: seeds)
    func aHigherThresholdSkipsMoreAndErrsMore(seed: UInt64) throws {
        let trace = FallbackTests.trace(seed)
        var previous: ReplayResult?
        for threshold in [0.0, 0.1, 0.3, 1.1] {
            let r = try fallback.run(trace, .skip, precision: precision(skip: threshold), numerics: NumericsOptions(scale: 4))
            let n = try #require(r.numerics)
            if let p = previous {
                let what = "seed \(seed) threshold \(threshold)"
                #expect(r.counters.skippedExperts >= p.counters.skippedExperts, "\(what)")
                #expect(r.counters.bytesH2D <= p.counters.bytesH2D, "\(what)")
                #expect(n.relErrorMean >= p.numerics!.relErrorMean, "\(what)")
            } else {
                #expect(n.relErrorMean == 0 && n.cosineMin == 1)
            }
            // Every miss is a copy or a skip: copies = misses - skipped (no prefetch, full copies only).
            #expect(r.counters.bytesH2D == (r.counters.misses - r.counters.skippedExperts) * Self.expertBytes)
            previous = r
        }
        // Above every weight, every miss is skipped: nothing is ever copied.
        #expect(previous!.counters.bytesH2D == 0 && previous!.counters.skippedExperts == previous!.counters.misses)
    }

    static let expertBytes = FallbackTests.model.expertBytes

    /// Three misses in one layer with weights 0.05, 0.2 and 0.75 (top-3 of 8): `mixed-skip` with thresholds 0.1 and
    /// 0.3 skips the first, copies the second in int4 and the third in full; `skip` alone skips only the first.
    @Test func mixedSkipUsesBothThresholds() throws {
        var trace = RoutingTrace(header: TraceHeader(model: "t", layers: 1, experts: 8, topK: 3), name: "t")
        var record = TokenRecord(layers: 1, topK: 3)
        record.experts = [1, 4, 6]
        record.weights = [0.05, 0.2, 0.75]
        record.hasWeights = true
        trace.append(record)
        let model = tinyModel(layers: 1, experts: 8, topK: 3)
        let low = PrecisionOptions(threshold: 0.3).lowBytes(params: model.expertParams)
        for (policy, skipped, bytes) in [(PolicyKind.mixedSkip, 1, low + model.expertBytes), (.skip, 1, 2 * model.expertBytes),
                                         (.mixedPrecision, 0, 2 * low + model.expertBytes)] {
            let spec = ReplaySpec(model: model, hardware: tinyHardware(), policy: policy, budget: .experts(8),
                                  precision: precision(skip: 0.1))
            let r = try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: spec, recordPrecision: true)
            #expect(r.counters.skippedExperts == skipped && r.counters.bytesH2D == bytes, "\(policy)")
            #expect(r.counters.misses == 3)
        }
    }

    /// A weight equal to a threshold is not below it (docs/policies.md: "below"): top-2 of 4 with weights 0.25 and
    /// 0.125 (exact in binary), thresholds 0.25 (skip) and 0.5 (low precision): `skip` copies 0.25's expert and skips
    /// 0.125's; `mixed-precision` at 0.25 copies 0.25's in full and 0.125's low.
    @Test func aWeightEqualToTheThresholdIsNotBelowIt() throws {
        var trace = RoutingTrace(header: TraceHeader(model: "t", layers: 1, experts: 4, topK: 2), name: "t")
        var record = TokenRecord(layers: 1, topK: 2)
        record.experts = [0, 3]
        record.weights = [0.25, 0.125]
        record.hasWeights = true
        trace.append(record)
        let model = tinyModel(layers: 1, experts: 4, topK: 2)
        let low = PrecisionOptions(threshold: 0.25).lowBytes(params: model.expertParams)
        for (policy, skipped, bytes) in [(PolicyKind.skip, 1, model.expertBytes), (.mixedPrecision, 0, model.expertBytes + low)] {
            var options = PrecisionOptions(threshold: 0.25)
            options.skipThreshold = 0.25
            let spec = ReplaySpec(model: model, hardware: tinyHardware(), policy: policy, budget: .experts(4), precision: options)
            let r = try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: spec)
            #expect(r.counters.skippedExperts == skipped && r.counters.bytesH2D == bytes, "\(policy)")
        }
    }

    @Test func skippingNeedsGateWeightsAndAValidThreshold() throws {
        let unweighted = makeTrace([[[0, 1]]], experts: 4, topK: 2)
        let spec = ReplaySpec(model: tinyModel(layers: 1, experts: 4, topK: 2), hardware: tinyHardware(), policy: .skip,
                              budget: .experts(4))
        #expect(throws: ConfigError.self) { try Replayer.run(plan: StepPlan(unweighted), traceName: "t", spec: spec) }
        var p = PrecisionOptions()
        #expect(throws: ConfigError.self) { try p.set("skip_threshold", to: "-0.1", origin: "--set") }
        #expect(throws: ConfigError.self) { try p.set("skip_treshold", to: "0.1", origin: "--set") }
    }
}
