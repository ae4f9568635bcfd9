import Testing
@testable import MoESim

/// `CircularLists` against plain arrays: after random insertions and removals, every list reads the same forwards
/// (from its sentinel's `next`) and backwards (from its `previous`).
@Suite struct CircularListsTests {
    @Test(arguments: propertySeeds(8))
    func everyListReadsLikeItsArrayBothWays(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let nodes = 30, listCount = 1 + Int(seed % 3)
        let lists = CircularLists(nodes: nodes + listCount, sentinels: nodes..<(nodes + listCount))
        defer { lists.deallocate() }
        var reference = [[Int32]](repeating: [], count: listCount)
        for _ in 0..<2000 {
            let n = Int32(rng.nextInt(below: nodes))
            if let l = reference.firstIndex(where: { $0.contains(n) }) {
                lists.unlink(n)
                reference[l].removeAll { $0 == n }
            } else {
                let l = rng.nextInt(below: listCount), sentinel = Int32(nodes + l)
                // After the sentinel (first), or after a node already in the list.
                let at = reference[l].isEmpty || rng.nextInt(below: 2) == 0 ? -1 : rng.nextInt(below: reference[l].count)
                lists.insert(n, after: at < 0 ? sentinel : reference[l][at])
                reference[l].insert(n, at: at + 1)
            }
            for l in 0..<listCount {
                let sentinel = Int32(nodes + l)
                var forwards: [Int32] = [], backwards: [Int32] = []
                var n = lists.next(sentinel)
                while n != sentinel && forwards.count <= nodes { forwards.append(n); n = lists.next(n) }
                n = lists.previous(sentinel)
                while n != sentinel && backwards.count <= nodes { backwards.append(n); n = lists.previous(n) }
                let same = forwards == reference[l] && backwards == reference[l].reversed()
                    && lists.isEmpty(sentinel) == reference[l].isEmpty
                #expect(same, "seed \(seed), list \(l)")
            }
        }
    }
}
