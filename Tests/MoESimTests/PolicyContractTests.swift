import Testing
@testable import MoESim

/// Contract tests every eviction policy passes (gem5 `lru_rp.test.cc` style), driven without a simulator.
@Suite struct PolicyContractTests {
    /// A policy over `n` experts in one partition, with `future` as the access stream for offline ones.
    static func make(_ kind: PolicyKind, n: Int, accesses: [Int32]) -> (any CachePolicy)? {
        switch kind {
        case .lru: LRUPolicy(experts: n, partitionOf: Array(repeating: 0, count: n), partitions: 1)
        case .fifo: LRUPolicy(experts: n, partitionOf: Array(repeating: 0, count: n), partitions: 1, touchesOnAccess: false)
        case .belady: BeladyPolicy(experts: n, future: FutureIndex(nextUse: accesses))
        case .arc: ARCPolicy(experts: n, partitionOf: Array(repeating: 0, count: n), capacities: [4])
        default: nil
        }
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

    static let evicting: [PolicyKind] = [.lru, .fifo, .arc, .belady]

    @Test(arguments: evicting)
    func aSingleCandidateIsAlwaysTheVictim(kind: PolicyKind) {
        var policy = Self.make(kind, n: 8, accesses: [3])!
        policy.didInsert(3, at: 0)
        let none = Pins([]), three = Pins([3]), arriving = Pins([], inFlight: [3])
        #expect(policy.victim(in: 0, pinned: none.set) == 3)
        #expect(policy.victim(in: 0, pinned: three.set) == nil, "a pinned expert is never the victim")
        #expect(policy.victim(in: 0, pinned: arriving.set) == nil, "nor one whose copy is still arriving")
    }

    @Test(arguments: evicting)
    func evictedExpertsAreNoLongerCandidates(kind: PolicyKind) {
        var policy = Self.make(kind, n: 8, accesses: [1, 2, 3])!
        for (i, e) in [Int32(1), 2, 3].enumerated() { policy.didInsert(e, at: i) }
        var seen: [Int32] = []
        let none = Pins([])
        while let v = policy.victim(in: 0, pinned: none.set) {
            seen.append(v)
            policy.didEvict(v)
        }
        #expect(seen.sorted() == [1, 2, 3])
    }

    @Test func lruAccessMovesAnEntryOutOfTheVictimPosition() {
        var lru = Self.make(.lru, n: 8, accesses: [])!
        for e in Int32(0)..<3 { lru.didInsert(e, at: Int(e)) }
        let none = Pins([]), one = Pins([1])
        #expect(lru.victim(in: 0, pinned: none.set) == 0)
        lru.didAccess(0, at: 3)
        #expect(lru.victim(in: 0, pinned: none.set) == 1)
        #expect(lru.victim(in: 0, pinned: one.set) == 2, "pinned entries are skipped")
    }

    @Test func fifoIgnoresAccesses() {
        var fifo = Self.make(.fifo, n: 8, accesses: [])!
        for e in Int32(0)..<3 { fifo.didInsert(e, at: Int(e)) }
        fifo.didAccess(0, at: 3)
        let none = Pins([])
        #expect(fifo.victim(in: 0, pinned: none.set) == 0)
    }

    @Test func beladyEvictsTheFarthestNextUseAndTiesGoToTheFirstCandidate() {
        // Access stream: 0 1 2 | 1 0 | (2 never again) ... expert 3 inserted at 5, never used again.
        let stream: [Int32] = [0, 1, 2, 1, 0, 3]
        var opt = Self.make(.belady, n: 8, accesses: stream)!
        for i in 0..<3 { opt.didInsert(stream[i], at: i) }
        let none = Pins([])
        #expect(opt.victim(in: 0, pinned: none.set) == 2, "2 is never used again")
        opt.didAccess(1, at: 3)
        opt.didAccess(0, at: 4)
        opt.didInsert(3, at: 5)
        // 0, 1, 2, 3 are all never used again now: the tie goes to the lowest id.
        #expect(opt.victim(in: 0, pinned: none.set) == 0)
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

extension FutureIndex {
    /// A future index of a bare access stream (contract tests without a plan).
    init(nextUse stream: [Int32]) {
        let trace = makeTrace(stream.map { [[Int($0)]] }, experts: 64, topK: 1)
        self.init(StepPlan(trace))
    }
}
