import Testing
@testable import MoESim

/// Prefetch admission (`prefetch.admission`, docs/simulation.md "Prefetch admission"): hand-worked event logs for
/// each rule, and properties over seeds.
@Suite struct AdmissionTests {
    static func options(_ rule: PrefetchAdmission) -> PrefetchOptions {
        var o = PrefetchOptions()
        o.admission = rule
        return o
    }

    /// Three layers of 4 experts, top-1, one token routed to 0, 1, 2 (flat 0, 5, 10); pregated; room for all.
    /// Non-expert compute 2 µs, a copy 201 µs, an expert's compute 3 µs.
    /// - Layer 0 (gate 2 µs): 0 is copied 2 → 203 µs; the prefetch of 5 is admitted (no earlier gate to time a
    ///   layer by) and queued behind it: 203 → 404 µs.
    /// - Layer 1 (gate 208 µs): the prefetch of 10 would start when the link frees (404 µs) and land at 605 µs;
    ///   its gate is due one layer on, 208 + (208 − 2) = 414 µs: refused. 5 is late; computed at 404 µs.
    /// - Layer 2 (gate 409 µs): 10 is a demand miss, copied 409 → 610 µs (without admission its prefetch lands at
    ///   605 µs and the step ends 5 µs sooner: the rule estimates, it does not foresee).
    @Test func deadlineRefusesAPrefetchThatLandsAfterItsGate() throws {
        let trace = makeTrace([[[0], [1], [2]]], experts: 4, topK: 1)
        let model = tinyModel(layers: 3, experts: 4, topK: 1)
        let (r, events) = try replayLogged(trace, model: model, policy: .pregated, budget: .experts(12),
                                           prefetch: Self.options(.deadline))
        let expected: [(SimEvent, Int64)] = [
            (.layerStart(step: 0, layer: 0), 0), (.gate(step: 0, layer: 0), 2_000), (.miss(expert: 0), 2_000),
            (.prefetch(expert: 5), 2_000), (.copyStart(expert: 0), 2_000), (.copyEnd(expert: 0), 203_000),
            (.computeStart(expert: 0), 203_000), (.copyStart(expert: 5), 203_000), (.computeEnd(expert: 0), 206_000),
            (.layerEnd(step: 0, layer: 0), 206_000),
            (.layerStart(step: 0, layer: 1), 206_000), (.gate(step: 0, layer: 1), 208_000), (.miss(expert: 5), 208_000),
            (.copyEnd(expert: 5), 404_000), (.computeStart(expert: 5), 404_000), (.computeEnd(expert: 5), 407_000),
            (.layerEnd(step: 0, layer: 1), 407_000),
            (.layerStart(step: 0, layer: 2), 407_000), (.gate(step: 0, layer: 2), 409_000), (.miss(expert: 10), 409_000),
            (.copyStart(expert: 10), 409_000), (.copyEnd(expert: 10), 610_000), (.computeStart(expert: 10), 610_000),
            (.computeEnd(expert: 10), 613_000), (.layerEnd(step: 0, layer: 2), 613_000),
        ]
        #expect(events.map(\.event) == expected.map(\.0))
        #expect(events.map(\.time.nanoseconds) == expected.map(\.1))
        #expect((r.counters.prefetch.issued, r.counters.prefetch.refused) == (1, 1))
        let without = try replay(trace, model: model, policy: .pregated, budget: .experts(12))
        #expect(without.counters.simNanoseconds == 608_000 && without.counters.prefetch.issued == 2)
    }

    /// Two layers of 4 experts, top-1; budget two experts (global LRU); pregated. Token 0 routes to 0, 0 (flat 0,
    /// 4), token 1 to 1, 1 (flat 1, 5).
    /// - Step 0: 0 copied; 4 prefetched into the free slot (late at layer 1).
    /// - Step 1, layer 0 (gate 409 µs): 1's miss evicts 0. The proposal 5 needs room: the victim is 4, of the next
    ///   layer (due as soon as 5) and used at that layer's last pass, while 5 was not: refused. Layer 1: 5 is a
    ///   demand miss that evicts 4 (615 → 816 µs).
    @Test func reuseKeepsAVictimDueNoLaterThatWasJustUsed() throws {
        let trace = makeTrace([[[0], [0]], [[1], [1]]], experts: 4, topK: 1)
        let model = tinyModel(layers: 2, experts: 4, topK: 1)
        let (r, events) = try replayLogged(trace, model: model, policy: .pregated, budget: .experts(2),
                                           prefetch: Self.options(.reuse))
        let stepOne = events.drop { $0.event != .layerStart(step: 1, layer: 0) }
        let expected: [(SimEvent, Int64)] = [
            (.layerStart(step: 1, layer: 0), 407_000), (.gate(step: 1, layer: 0), 409_000), (.evict(expert: 0), 409_000),
            (.miss(expert: 1), 409_000), (.copyStart(expert: 1), 409_000), (.copyEnd(expert: 1), 610_000),
            (.computeStart(expert: 1), 610_000), (.computeEnd(expert: 1), 613_000), (.layerEnd(step: 1, layer: 0), 613_000),
            (.layerStart(step: 1, layer: 1), 613_000), (.gate(step: 1, layer: 1), 615_000), (.evict(expert: 4), 615_000),
            (.miss(expert: 5), 615_000), (.copyStart(expert: 5), 615_000), (.copyEnd(expert: 5), 816_000),
            (.computeStart(expert: 5), 816_000), (.computeEnd(expert: 5), 819_000), (.layerEnd(step: 1, layer: 1), 819_000),
        ]
        #expect(stepOne.map(\.event) == expected.map(\.0))
        #expect(stepOne.map(\.time.nanoseconds) == expected.map(\.1))
        #expect((r.counters.prefetch.issued, r.counters.prefetch.refused) == (1, 1))
        // Without admission the prefetch of 5 evicts 4 at step 1's first gate.
        let (_, plain) = try replayLogged(trace, model: model, policy: .pregated, budget: .experts(2))
        #expect(plain.contains { $0.event == .prefetch(expert: 5) && $0.time.nanoseconds == 409_000 })
    }

    /// Over seeds and every prefetching strategy, each rule keeps the ledger (useful + late + wasted + cancelled =
    /// issued) and refuses only where it can: with instant copies no prefetch lands after its gate (`deadline`
    /// refuses nothing and equals `none`); with room for every expert no victim is needed (`reuse` refuses nothing).
    @Test(arguments: PrefetchAdmission.allCases)
    func eachRuleKeepsTheLedgerAndRefusesOnlyWhereItCan(rule: PrefetchAdmission) throws {
        let model = tinyModel(layers: 3, experts: 8, topK: 2)
        var instant = tinyHardware()
        instant.linkBytesPerSecond = 1e30
        instant.linkLatencySeconds = 0
        for seed in propertySeeds(6) {
            let trace = zipfTrace(seed: seed, layers: 3, experts: 8, topK: 2, tokens: 40)
            for policy in PolicyKind.allCases where policy.prefetches {
                let label = "\(policy), \(rule), seed \(seed)"
                let r = try replay(trace, model: model, policy: policy, budget: .experts(6), prefetch: Self.options(rule))
                let p = r.counters.prefetch
                #expect(p.useful + p.late + p.wasted + p.cancelled == p.issued, "\(label)")
                #expect(rule != .none || p.refused == 0, "\(label)")
                let none = try replay(trace, model: model, policy: policy, budget: .experts(6))
                #expect(p.issued + p.refused >= min(none.counters.prefetch.issued, 1), "\(label): proposals vanished")
                if rule == .deadline {
                    let fast = try replay(trace, model: model, hardware: instant, policy: policy, budget: .experts(6),
                                          prefetch: Self.options(rule))
                    let fastNone = try replay(trace, model: model, hardware: instant, policy: policy, budget: .experts(6))
                    #expect(fast.counters.prefetch.refused == 0, "\(label)")
                    #expect(Metric.row(fast, []) == Metric.row(fastNone, []), "\(label)")
                }
                if rule == .reuse {
                    let roomy = try replay(trace, model: model, policy: policy, budget: .experts(24), prefetch: Self.options(rule))
                    #expect(roomy.counters.prefetch.refused == 0, "\(label)")
                }
            }
        }
    }

    /// The rule is a setting of the prefetching strategies only, and the report says which was used.
    @Test func theReportNamesTheRuleAndOthersRefuseIt() throws {
        let trace = zipfTrace(seed: 1, layers: 3, experts: 8, topK: 2, tokens: 20)
        let model = tinyModel(layers: 3, experts: 8, topK: 2)
        let r = try replay(trace, model: model, policy: .affinity, budget: .experts(6), prefetch: Self.options(.both))
        let row = Metric.row(r), header = Metric.header(r.columnGroups)
        #expect(row[header.firstIndex(of: "prefetch_admission")!] == "both")
        #expect(row[header.firstIndex(of: "prefetch_refused")!] == "\(r.counters.prefetch.refused)")
        let plain = try replay(trace, model: model, policy: .affinity, budget: .experts(6))
        #expect(!Metric.header(plain.columnGroups).contains("prefetch_admission"))
        #expect(throws: (any Error).self) {
            try SettingScope.check([("prefetch.admission", "--admission")], policies: [.lru], schedulers: [.sequential])
        }
    }
}
