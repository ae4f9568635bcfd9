import Testing
@testable import MoESim

/// Contract tests every eviction policy passes (gem5 `lru_rp.test.cc` style), driven without a simulator. The
/// policies come from the registry (`PolicyKind.assemble`): every eviction rule a strategy uses is checked, so a new
/// one is covered without editing a list here.
@Suite struct PolicyContractTests {
    /// Hands back the policy the registry built for a strategy.
    struct PolicyOf: StrategyRunner {
        func run<Policy: CachePolicy, Predictor: PrefetchPredictor, Handler: MissHandler, Place: Placement>(
            _ policy: Policy, _ predictor: Predictor, _ handler: Handler, _ placement: Place) -> any CachePolicy { policy }
    }

    /// One policy per distinct eviction rule of the registry's strategies (those that evict), over 64 experts in one
    /// partition of 4, built for the access stream `accesses` (what offline policies see of the future).
    static func evictingPolicies(accesses: [Int32]) throws -> [(rule: String, policy: any CachePolicy)] {
        let model = tinyModel(layers: 1, experts: 64, topK: 1)
        let plan = StepPlan(makeTrace(accesses.map { [[Int($0)]] }, experts: 64, topK: 1))
        let cost = CostModel(model: model, hardware: tinyHardware())
        var policies: [(String, any CachePolicy)] = []
        for kind in PolicyKind.allCases {
            let spec = ReplaySpec(model: model, hardware: tinyHardware(), policy: kind, budget: .experts(4))
            let rule = kind.eviction(spec.prefetch)
            guard rule != "none", !policies.contains(where: { $0.0 == rule }) else { continue }
            let context = StrategyContext(plan: plan, cache: CacheShape(experts: 64, capacity: 4 * model.expertBytes,
                                                                        expertBytes: model.expertBytes), spec: spec, cost: cost)
            policies.append((rule, try kind.assemble(context, PolicyOf())))
        }
        return policies
    }

    /// The policy of one named rule (for the rules' own hand-worked tests).
    static func make(_ rule: String, accesses: [Int32] = Array(0..<16)) throws -> any CachePolicy {
        try #require(try evictingPolicies(accesses: accesses).first { $0.rule == rule }).policy
    }

    @Test func theRegistryCoversEveryEvictionRule() throws {
        #expect(try Self.evictingPolicies(accesses: [0]).map(\.rule).sorted() == ["arc", "belady", "fifo", "lfu", "lru"])
    }

    final class Pins {
        let stamps = UnsafeMutablePointer<Int32>.allocate(capacity: 64)
        let landTime = UnsafeMutablePointer<Int64>.allocate(capacity: 64)
        init(_ pinned: [Int32], inFlight: [Int32] = []) {
            stamps.initialize(repeating: 0, count: 64)
            landTime.initialize(repeating: 0, count: 64)
            for p in pinned { stamps[Int(p)] = 1 }
            for p in inFlight { landTime[Int(p)] = 100 }
        }
        deinit { stamps.deallocate(); landTime.deallocate() }
        var set: PinSet { PinSet(stamps: stamps, epoch: 1, landTime: landTime, now: 50) }
    }

    @Test func aSingleCandidateIsAlwaysTheVictim() throws {
        for (rule, built) in try Self.evictingPolicies(accesses: [3]) {
            var policy = built
            policy.didInsert(3, at: 0)
            let none = Pins([]), three = Pins([3]), arriving = Pins([], inFlight: [3])
            #expect(policy.victim(in: 0, pinned: none.set) == 3, "\(rule)")
            #expect(policy.victim(in: 0, pinned: three.set) == nil, "\(rule): a pinned expert is never the victim")
            #expect(policy.victim(in: 0, pinned: arriving.set) == nil, "\(rule): nor one whose copy is still arriving")
        }
    }

    @Test func evictedExpertsAreNoLongerCandidates() throws {
        for (rule, built) in try Self.evictingPolicies(accesses: [1, 2, 3]) {
            var policy = built
            for (i, e) in [Int32(1), 2, 3].enumerated() { policy.didInsert(e, at: i) }
            var seen: [Int32] = []
            let none = Pins([])
            while let v = policy.victim(in: 0, pinned: none.set) {
                seen.append(v)
                policy.didEvict(v)
            }
            #expect(seen.sorted() == [1, 2, 3], "\(rule)")
        }
    }

    @Test func lruAccessMovesAnEntryOutOfTheVictimPosition() throws {
        var lru = try Self.make("lru")
        for e in Int32(0)..<3 { lru.didInsert(e, at: Int(e)) }
        let none = Pins([]), one = Pins([1])
        #expect(lru.victim(in: 0, pinned: none.set) == 0)
        lru.didAccess(0, at: 3)
        #expect(lru.victim(in: 0, pinned: none.set) == 1)
        #expect(lru.victim(in: 0, pinned: one.set) == 2, "pinned entries are skipped")
    }

    @Test func fifoIgnoresAccesses() throws {
        var fifo = try Self.make("fifo")
        for e in Int32(0)..<3 { fifo.didInsert(e, at: Int(e)) }
        fifo.didAccess(0, at: 3)
        let none = Pins([])
        #expect(fifo.victim(in: 0, pinned: none.set) == 0)
    }

    @Test func beladyEvictsTheFarthestNextUseAndTiesGoToTheFirstCandidate() throws {
        // Access stream: 0 1 2 | 1 0 | (2 never again) ... expert 3 inserted at 5, never used again.
        let stream: [Int32] = [0, 1, 2, 1, 0, 3]
        var opt = try Self.make("belady", accesses: stream)
        for i in 0..<3 { opt.didInsert(stream[i], at: i) }
        let none = Pins([])
        #expect(opt.victim(in: 0, pinned: none.set) == 2, "2 is never used again")
        opt.didAccess(1, at: 3)
        opt.didAccess(0, at: 4)
        opt.didInsert(3, at: 5)
        // 0, 1, 2, 3 are all never used again now: the tie goes to the lowest id.
        #expect(opt.victim(in: 0, pinned: none.set) == 0)
    }

    @Test func lfuEvictsTheFewestUsesAndTiesGoToTheLeastRecent() throws {
        var lfu = try Self.make("lfu")
        for e in Int32(0)..<4 { lfu.didInsert(e, at: Int(e)) }   // 0 1 2 3, one use each
        lfu.didAccess(0, at: 4); lfu.didAccess(0, at: 5)         // 0: three uses
        lfu.didAccess(2, at: 6)                                  // 2: two uses
        lfu.didAccess(1, at: 7)                                  // 1: two uses, touched after 2
        let none = Pins([]), three = Pins([3])
        #expect(lfu.victim(in: 0, pinned: none.set) == 3, "3 has the fewest uses")
        #expect(lfu.victim(in: 0, pinned: three.set) == 2, "then 2 and 1 tie at two uses: 2 was touched longer ago")
        lfu.didEvict(3)
        lfu.didInsert(3, at: 8)                                  // back with one use: counts are in-cache
        #expect(lfu.victim(in: 0, pinned: none.set) == 3)
        lfu.didEvict(3); lfu.didEvict(2)
        #expect(lfu.victim(in: 0, pinned: none.set) == 1)
        lfu.didEvict(1)
        #expect(lfu.victim(in: 0, pinned: none.set) == 0)
    }

    @Test func lfuKeepsTheFrequentExpertThroughAScanThatLRULetsGo() throws {
        // One layer, top-1: expert 0 is used often, then a run of one-off experts passes through a 2-expert cache.
        var cells: [[[Int]?]] = Array(repeating: [[0]], count: 5)
        for k in 1...6 { cells.append([[k]]); if k % 3 == 0 { cells.append([[0]]) } }
        let trace = makeTrace(cells, experts: 8, topK: 1)
        let model = tinyModel(layers: 1, experts: 8, topK: 1)
        let lru = try replay(trace, model: model, policy: .lru, budget: .experts(2))
        let lfu = try replay(trace, model: model, policy: .lfu, budget: .experts(2))
        // LRU evicts 0 when 1 and 2 arrive (0 is older than 1), so the two later uses of 0 miss; LFU keeps it.
        #expect(lfu.counters.hits == 4 + 2 && lru.counters.hits == 4 + 0)
    }
}

@Suite struct ARCTests {
    @Test func aHitMovesAnExpertOutOfTheRecencyListAndGhostHitsAdapt() {
        let arc = ARCPolicy(experts: 16, partitionOf: Array(repeating: 0, count: 16), capacities: [2])
        let stamps = UnsafeMutablePointer<Int32>.allocate(capacity: 16), land = UnsafeMutablePointer<Int64>.allocate(capacity: 16)
        defer { stamps.deallocate(); land.deallocate() }
        stamps.initialize(repeating: 0, count: 16); land.initialize(repeating: 0, count: 16)
        let none = PinSet(stamps: stamps, epoch: 1, landTime: land, now: 0)
        arc.didInsert(0, at: 0); arc.didInsert(1, at: 1)
        arc.didAccess(0, at: 2)                  // 0 is frequent (T2), 1 recent (T1)
        #expect(arc.victim(in: 0, pinned: none) == 1, "T1 is larger than the target 0: evict from T1")
        arc.didEvict(1)                          // 1 becomes a ghost in B1
        arc.didInsert(2, at: 3)
        arc.didInsert(1, at: 4)                  // a ghost hit in B1 raises the target and puts 1 in T2
        arc.didEvict(2)
        #expect(arc.victim(in: 0, pinned: none) == 0, "T1 is empty: the least recent of T2 goes")
    }

    /// The paper's Figure 1 worked by hand, c = 2, requests A B A C B D A C B E A B C E A F C (A = 0 … F = 5), driven
    /// as the engine drives a policy: a hit is `didAccess`; a miss is `willInsert`, then (cache full) `victim` and
    /// `didEvict`, then `didInsert`. Hits at requests 3 and 12. Victims, with the state that decides them:
    /// 4 C: |T1| = 1 > p = 0: B (to B1). 5 B, a B1 ghost: p = 1 first, so |T1| = 1 is not > p: A from T2 (adapting
    /// after the victim, as moesim did, took C). 6 D: B. 7 A, a B2 ghost: p = 0: C from T1. 8 C (B1): p = 1: A.
    /// 9 B (B2): p = 0: D. 10 E: the lists hold 2c, B2's oldest ghost (A) goes; T1 is empty: C. 11 A: |T1| + |B1| =
    /// c with |T1| < c, B1's oldest (D) goes: E. 13 C (B2): p = 0: A. 14 E (B1): p = 1, T1 empty: B. 15 A (B1):
    /// p = 2: C. 16 F: B2's oldest (B) goes: E. 17 C (B2): p = 1 = |T1| and C is a B2 ghost: F from T1 (the tie rule;
    /// without it, A from T2).
    @Test func arcFollowsThePapersPseudocode() {
        let arc = ARCPolicy(experts: 8, partitionOf: Array(repeating: 0, count: 8), capacities: [2])
        let stamps = UnsafeMutablePointer<Int32>.allocate(capacity: 8), land = UnsafeMutablePointer<Int64>.allocate(capacity: 8)
        defer { stamps.deallocate(); land.deallocate() }
        stamps.initialize(repeating: 0, count: 8); land.initialize(repeating: 0, count: 8)
        let none = PinSet(stamps: stamps, epoch: 1, landTime: land, now: 0)
        var resident = Set<Int32>(), hits: [Int] = [], victims: [Int32] = []
        for (i, x) in [0, 1, 0, 2, 1, 3, 0, 2, 1, 4, 0, 1, 2, 4, 0, 5, 2].map(Int32.init).enumerated() {
            if resident.contains(x) {
                arc.didAccess(x, at: i)
                hits.append(i + 1)
                continue
            }
            arc.willInsert(x)
            if resident.count == 2, let v = arc.victim(in: 0, pinned: none) {
                arc.didEvict(v)
                resident.remove(v)
                victims.append(v)
            }
            arc.didInsert(x, at: i)
            resident.insert(x)
        }
        #expect(hits == [3, 12])
        #expect(victims == [1, 0, 1, 2, 0, 3, 2, 4, 0, 1, 2, 4, 5])
    }

    @Test func arcResistsAScanThatFlushesLRU() throws {
        // One layer, top-1: a hot pair used over and over, interrupted by one-off scans of 3 cold experts.
        var cells: [[[Int]?]] = []
        for round in 0..<20 {
            for _ in 0..<3 { cells.append([[0]]); cells.append([[1]]) }
            for k in 0..<3 { cells.append([[2 + (round * 3 + k) % 14]]) }
        }
        let trace = makeTrace(cells, experts: 16, topK: 1)
        let model = tinyModel(layers: 1, experts: 16, topK: 1)
        let lru = try replay(trace, model: model, policy: .lru, budget: .experts(3))
        let arc = try replay(trace, model: model, policy: .arc, budget: .experts(3))
        let opt = try replay(trace, model: model, policy: .belady, budget: .experts(3))
        #expect(arc.counters.hits > lru.counters.hits)
        #expect(arc.counters.hits <= opt.counters.hits)
    }
}

/// `KeepPlaced` hands its inner policy only the experts it ranks: a placed expert that a streaming layer frees was
/// never inserted there, so its eviction must not reach the inner policy (an LRU list would unlink a stranger);
/// once copied in again, it is ranked like any other.
@Suite struct KeepPlacedTests {
    /// Records what it is told, and counts evictions of experts it was never given.
    struct Recording: CachePolicy {
        var held: Set<Int32> = []
        var evicted: [Int32] = []
        var strangers = 0
        mutating func didInsert(_ expert: Int32, at access: Int) { held.insert(expert) }
        mutating func didEvict(_ expert: Int32) {
            if held.remove(expert) == nil { strangers += 1 }
            evicted.append(expert)
        }
        mutating func victim(in partition: Int, pinned: PinSet) -> Int32? { held.min() }
    }

    @Test func aFreedPlacedExpertIsNotEvictedFromTheInnerPolicy() {
        var cache = KeepPlaced(experts: 4, inner: Recording())
        cache.didPlace(0)
        cache.didInsert(1, at: 0)
        cache.didEvict(0)  // placed, freed by a streaming layer
        #expect(cache.inner.evicted.isEmpty)
        cache.didInsert(0, at: 5)  // copied in again: ranked from now on
        cache.didEvict(0)
        cache.didEvict(1)
        #expect(cache.inner.evicted == [0, 1] && cache.inner.strangers == 0)
    }
}
