import Testing
@testable import MoESim

/// `AffinityPredictor` against its definition: Space-Saving successor lists, ranked by summed counts.
@Suite struct AffinityPredictorTests {
    /// Runs `predict` on `revealed` (flat ids of `layer`) and returns the proposals.
    func proposals(_ predictor: AffinityPredictor, step: Int, layer: Int, _ revealed: [Int32]) -> [Int32] {
        var list = ExpertList(capacity: 4)
        defer { list.deallocate() }
        revealed.withUnsafeBufferPointer { predictor.predict(step: step, layer: layer, revealed: $0, into: &list) }
        return Array(list.elements)
    }

    @Test func aSuccessorSeenBeforeIsProposedAndNothingIsProposedBeforeAnyHistory() {
        let predictor = AffinityPredictor(layers: 2, experts: 8)
        #expect(proposals(predictor, step: 0, layer: 0, [3]) == [])  // nothing learned yet
        _ = proposals(predictor, step: 0, layer: 1, [8 + 5])          // 3 was followed by 5
        #expect(proposals(predictor, step: 1, layer: 0, [3]) == [8 + 5])
        #expect(proposals(predictor, step: 1, layer: 0, [4]) == [])   // 4 has no history
    }

    @Test func theLastLayerIsFollowedByTheNextStepsFirst() {
        let predictor = AffinityPredictor(layers: 2, experts: 8)
        _ = proposals(predictor, step: 0, layer: 0, [3])
        _ = proposals(predictor, step: 0, layer: 1, [8 + 5])
        _ = proposals(predictor, step: 1, layer: 0, [2])        // layer 1's 5 was followed by the next step's 2
        #expect(proposals(predictor, step: 1, layer: 1, [8 + 5]) == [2], "proposed across the step boundary")
        // Only consecutive layers are successors: layer 0 twice in a row teaches nothing.
        _ = proposals(predictor, step: 2, layer: 0, [6])
        _ = proposals(predictor, step: 2, layer: 0, [7])
        #expect(proposals(predictor, step: 3, layer: 0, [6]) == [])
    }

    @Test func candidatesRankBySummedCountsWithTiesToTheLowerId() {
        let predictor = AffinityPredictor(layers: 2, experts: 8)
        // Expert 0 was followed by {6, 7} twice; expert 1 by {2, 7} once.
        for step in 0..<2 {
            _ = proposals(predictor, step: step, layer: 0, [0])
            _ = proposals(predictor, step: step, layer: 1, [8 + 6, 8 + 7])
        }
        _ = proposals(predictor, step: 2, layer: 0, [1])
        _ = proposals(predictor, step: 2, layer: 1, [8 + 2, 8 + 7])
        // Scores given {0, 1}: 7 → 3, 6 → 2, 2 → 1; two proposals because two experts were revealed.
        #expect(proposals(predictor, step: 3, layer: 0, [0, 1]) == [8 + 7, 8 + 6])
        // Given {1} alone: 2 and 7 tie at 1; one proposal, the lower id.
        #expect(proposals(predictor, step: 4, layer: 0, [1]) == [8 + 2])
    }

    /// Over random routing, the predictor proposes exactly what a plain-array transcription of its definition does,
    /// including when successor lists overflow and Space-Saving replaces their weakest entries, for rows of one to
    /// five 64-bit words of ids (its search reads four at a time).
    @Test(arguments: 0..<12)
    func matchesAPlainTranscriptionOfItsDefinition(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let layers = 3, experts = 6 + Int(seed % 5) * 5, followers = [1, 2, 3, 4, 5, 8, 9, 13, 16, 17, 20, 7][Int(seed)]
        let predictor = AffinityPredictor(layers: layers, experts: experts, followers: followers)
        var reference = ReferenceAffinity(experts: experts, followers: followers)
        var before: [Int32] = []  // the layer revealed last: the previous layer, or the previous step's last
        for step in 0..<60 {
            for layer in 0..<layers {
                let k = 1 + rng.nextInt(below: 3)
                var chosen = Set<Int32>()
                while chosen.count < k { chosen.insert(Int32(layer * experts + rng.nextInt(below: experts))) }
                let revealed = chosen.sorted()
                if layer > 0 || step > 0 { reference.learn(from: before, to: revealed.map { $0 - Int32(layer * experts) }) }
                let expected = reference.predict(revealed).map { $0 + Int32((layer + 1) % layers * experts) }
                #expect(proposals(predictor, step: step, layer: layer, revealed) == expected, "seed \(seed) step \(step) layer \(layer)")
                before = revealed
            }
        }
    }
}

/// Space-Saving successor lists kept as arrays of (id, count), strongest first, written for clarity.
private struct ReferenceAffinity {
    let experts: Int
    let followers: Int
    var lists: [Int32: [(id: Int32, count: Int32)]] = [:]

    init(experts: Int, followers: Int) {
        self.experts = experts
        self.followers = min(followers, experts)
    }

    mutating func learn(from previous: [Int32], to next: [Int32]) {
        for i in previous { for j in next { record(from: i, to: j) } }
    }

    mutating func record(from i: Int32, to j: Int32) {
        var list = lists[i, default: []]
        var slot: Int
        if let found = list.firstIndex(where: { $0.id == j }) {
            slot = found
        } else if list.count < followers {
            list.append((j, 0)); slot = list.count - 1
        } else {
            slot = list.count - 1; list[slot].id = j  // replace the weakest, keep its count
        }
        list[slot].count += 1
        while slot > 0 && list[slot - 1].count < list[slot].count { list.swapAt(slot, slot - 1); slot -= 1 }
        lists[i] = list
    }

    /// The |revealed| candidates of highest summed count, ties to the lower id.
    func predict(_ revealed: [Int32]) -> [Int32] {
        var score: [Int32: Int32] = [:]
        for i in revealed { for entry in lists[i, default: []] { score[entry.id, default: 0] += entry.count } }
        let ranked = score.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        return ranked.prefix(revealed.count).map(\.key)
    }
}
