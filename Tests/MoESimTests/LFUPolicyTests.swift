import Testing
@testable import MoESim

/// `LFUPolicy`'s buckets against its rule kept plainly: per resident expert its uses and last touch; the victim is
/// the unpinned one with the fewest uses (counts at or above the cap tie), then the oldest touch.
@Suite struct LFUPolicyTests {
    @Test(arguments: propertySeeds(8))
    func theVictimIsTheFewestUsesThenTheLeastRecentUnpinned(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let experts = 40, partitions = 1 + Int(seed % 3), cap = UInt32(2 + seed % 4)
        let partitionOf = (0..<experts).map { Int32($0 % partitions) }
        let lfu = LFUPolicy(cache: CacheShape(partitionOf: partitionOf, capacities: Array(repeating: 1, count: partitions),
                                              expertBytes: 1), mostUses: cap)
        var uses: [Int32: UInt32] = [:], touched: [Int32: Int] = [:]
        for clock in 0..<3000 {
            let e = Int32(rng.nextInt(below: experts))
            if uses[e] == nil {
                lfu.didInsert(e, at: clock)
                uses[e] = 1
            } else if rng.nextInt(below: 8) == 0 {
                lfu.didEvict(e)
                uses[e] = nil
            } else {
                lfu.didAccess(e, at: clock)
                uses[e]! += 1
            }
            touched[e] = clock
            let pinned = PolicyContractTests.Pins((0..<experts).compactMap { rng.nextInt(below: 4) == 0 ? Int32($0) : nil })
            for p in 0..<partitions {
                let expected = uses.keys.filter { partitionOf[Int($0)] == p && pinned.stamps[Int($0)] == 0 }
                    .min { (min(uses[$0]!, cap), touched[$0]!) < (min(uses[$1]!, cap), touched[$1]!) }
                #expect(lfu.victim(in: p, pinned: pinned.set) == expected, "seed \(seed), touch \(clock), partition \(p)")
            }
        }
    }
}
