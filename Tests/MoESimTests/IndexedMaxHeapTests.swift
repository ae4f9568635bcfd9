import Testing
@testable import MoESim

/// The heap behind belady's eviction, against a dictionary of (expert, key).
@Suite struct IndexedMaxHeapTests {
    /// Over random inserts, re-keys, removals and victim searches with random pins, the heap always holds exactly
    /// the reference's entries with their keys; `maxUnpinned` names an unpinned expert of the largest unpinned key
    /// (or nil when every entry is pinned) and leaves every entry, pinned ones included, where it was.
    @Test(arguments: propertySeeds(8))
    func holdsExactlyItsEntriesThroughVictimSearches(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let experts = 40
        let heap = IndexedMaxHeap(capacity: experts)
        var reference: [Int32: UInt64] = [:]
        let stamps = UnsafeMutablePointer<Int32>.allocate(capacity: experts)
        let landTime = UnsafeMutablePointer<Int64>.allocate(capacity: experts)
        defer { stamps.deallocate(); landTime.deallocate() }
        landTime.initialize(repeating: 0, count: experts)
        for step in 0..<2_000 {
            let e = Int32(rng.nextInt(below: experts))
            switch rng.nextInt(below: 4) {
            case 0, 1:
                let key = UInt64(rng.nextInt(below: 50))  // few keys: ties are common
                heap.set(e, key: key)
                reference[e] = key
            case 2:
                heap.remove(e)
                reference[e] = nil
            default:
                stamps.initialize(repeating: 0, count: experts)
                for _ in 0..<rng.nextInt(below: experts) { stamps[rng.nextInt(below: experts)] = 1 }
                let pins = PinSet(stamps: stamps, epoch: 1, landTime: landTime, now: 0)
                let victim = heap.maxUnpinned(pins)
                let unpinned = reference.filter { stamps[Int($0.key)] != 1 }
                if let victim {
                    #expect(stamps[Int(victim)] != 1 && reference[victim] == unpinned.values.max(), "seed \(seed) step \(step)")
                } else {
                    #expect(unpinned.isEmpty, "seed \(seed) step \(step)")
                }
            }
            #expect(heap.count == reference.count && (0..<Int32(experts)).allSatisfy { heap.contains($0) == (reference[$0] != nil) },
                    "seed \(seed) step \(step)")
            #expect(heap.max?.key == reference.values.max(), "seed \(seed) step \(step)")
        }
        // Emptied from the top: every key comes back, largest first, each with its own expert.
        var drained: [UInt64] = []
        while let top = heap.max {
            #expect(reference[top.expert] == top.key)
            drained.append(top.key)
            heap.remove(top.expert)
        }
        #expect(drained == reference.values.sorted(by: >), "seed \(seed)")
    }
}
