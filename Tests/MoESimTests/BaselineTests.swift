import Foundation
import Testing
@testable import MoESim

/// The baselines users run and papers compare against (issue 14, parts 2 and 4).
struct BaselineTests {
    /// MoE-Prefetch copies every expert of the next layer and cancels none: its bytes grow with the experts per
    /// layer, while on-demand's stay those of the experts used.
    @Test func prefetchAllMovesMoreBytesAsLayersHaveMoreExperts() throws {
        var moved: [Int] = []
        for experts in [8, 64, 128] {
            let trace = zipfTrace(seed: 3, layers: 4, experts: experts, topK: 1, tokens: 24, skew: 0)
            let model = tinyModel(layers: 4, experts: experts, topK: 1)
            let all = try replay(trace, model: model, policy: .prefetchAll, budget: .experts(2 * experts))
            let onDemand = try replay(trace, model: model, policy: .onDemand, budget: .experts(2))
            let p = all.counters.prefetch
            #expect(p.useful + p.late + p.wasted + p.cancelled == p.issued)
            #expect(p.bytesWasted == p.wasted * model.expertBytes)
            // Every started copy of a whole layer moves bytes: far more than the experts used.
            #expect(all.counters.bytesH2D > 4 * onDemand.counters.bytesH2D || experts == 8)
            #expect(all.counters.simNanoseconds > onDemand.counters.simNanoseconds)
            moved.append(all.counters.bytesH2D / model.expertBytes)
        }
        #expect(moved[0] < moved[1] && moved[1] < moved[2], "\(moved)")
    }

    /// A hand-worked MoE-Prefetch layer: one token, two layers of four experts, top-1. At layer 0's gate (2 µs)
    /// the demand copy of expert 1 and then the four copies of layer 1 (ids 4…7) queue on the link, 201 µs each; the
    /// copies keep their order, so layer 1's expert 6 waits for 4 and 5 to go first.
    @Test func prefetchAllCopiesKeepTheirOrder() throws {
        let trace = makeTrace([[[1], [2]]], experts: 4, topK: 1)  // layer 1's expert 2 is flat id 6
        var log = EventLog()
        let spec = ReplaySpec(model: tinyModel(layers: 2, experts: 4, topK: 1), hardware: tinyHardware(), policy: .prefetchAll,
                              budget: .experts(8))
        let r = try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: spec, sink: &log)
        let events = log.drain()
        let copies = events.compactMap { e -> (Int, Int64)? in if case let .copyEnd(x) = e.event { (x, e.time.nanoseconds) } else { nil } }
        // Demand copy of 1 lands at 203 µs; 4, 5, 6 at 404, 605 and 806 µs.
        #expect(copies.prefix(4).map { $0.0 } == [1, 4, 5, 6])
        #expect(copies.prefix(4).map { $0.1 } == [203_000, 404_000, 605_000, 806_000])
        // Layer 0 ends at 203 + 3 µs = 206 µs; layer 1's gate at 208 µs waits for expert 6 until 806 µs: ends 809 µs.
        #expect(r.counters.simNanoseconds == 809_000)
        // 4, 5 and 7 (started at 806 µs, before the run ended) moved unused: wasted; layer 0's 0, 2, 3 (proposed at
        // layer 1 for the next token) were still queued when the run ended: never sent, counted cancelled.
        let p = r.counters.prefetch
        #expect(p.late == 1 && p.wasted == 3 && p.cancelled == 3 && p.issued == 7, "\(p)")
    }
}
