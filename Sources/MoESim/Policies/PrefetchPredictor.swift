/// Proposes experts to copy ahead of need. Called at each layer's gate, once the layer's routing is revealed.
///
///     var p = PregatedPredictor(plan: plan)
///     p.predict(step: s, layer: l, revealed: ids, into: &proposals)   // flat ids of layers after l
///
/// The core issues the proposals as prefetch copies (after the layer's demand copies), counts them, and cancels
/// those still queued when their layer has passed. Proposals target later layers; a proposal for a layer at or
/// before `layer` is for the next step (at the last layer, layer 0 of the next step is the next target). A predictor
/// must not look at routing after `layer` unless it is an oracle (libCacheSim `prefetchAlgo.h` plays this role);
/// each says in docs/policies.md what it does at the step boundary.
public protocol PrefetchPredictor {
    /// False for `NoPrefetch`: the replay loop then compiles the prefetch machinery away.
    static var isEnabled: Bool { get }
    /// Whether the copies it proposed for a layer that never started are cancelled when the layer ends (true for
    /// every predictor but MoE-Prefetch's, which copies the whole next layer regardless).
    static var cancelsUnstarted: Bool { get }
    /// Whether each prediction replaces every proposal still queued from earlier ones (MoE-Infinity's prefetch
    /// queue): those not started are cancelled before the new ones are queued.
    static var replacesQueue: Bool { get }
    /// Where predictions come from, for the `predictor_source` column: none, exact, oracle, trace, modelled, online.
    var source: String { get }
    /// Appends flat expert ids to prefetch, in priority order. `revealed` is layer `layer`'s expert set (flat ids).
    mutating func predict(step: Int, layer: Int, revealed: UnsafeBufferPointer<Int32>, into proposals: inout ExpertList)
    /// Points a predictor that reads the plan at the run about to be replayed (steps are numbered from 0 in each
    /// plan); `following` is the plan whose first step comes after its last, when known. Predictors that learn
    /// online keep what they learnt.
    mutating func rebind(_ plan: StepPlan, following: StepPlan?)
}

extension PrefetchPredictor {
    public static var isEnabled: Bool { true }
    public static var cancelsUnstarted: Bool { true }
    public static var replacesQueue: Bool { false }
    public mutating func rebind(_ plan: StepPlan, following: StepPlan?) {}
}

/// Demand fetching only.
public struct NoPrefetch: PrefetchPredictor {
    public init() {}
    public static var isEnabled: Bool { false }
    public var source: String { "none" }
    public func predict(step: Int, layer: Int, revealed: UnsafeBufferPointer<Int32>, into proposals: inout ExpertList) {}
}

/// `pregated`: the pre-gate computes layer l+1's routing during layer l, so layer l+1's set is known exactly one
/// layer early (Pre-gated MoE, arXiv 2308.12066). The next token's routing does not exist before the token is
/// sampled, so at the last layer it proposes nothing: each step's first layer is loaded on demand.
public struct ExactPredictor: PrefetchPredictor {
    // Only the two columns it reads, not the whole plan: the loop would copy a plan-sized value on every call.
    var accessExpert: [Int32]
    var layerStart: [Int32]
    let layers: Int
    public var source: String { "exact" }

    public init(plan: StepPlan) {
        accessExpert = plan.accessExpert; layerStart = plan.layerStart; layers = plan.layers
    }

    public mutating func rebind(_ plan: StepPlan, following: StepPlan?) { self = ExactPredictor(plan: plan) }

    @inline(__always)
    public func predict(step: Int, layer: Int, revealed: UnsafeBufferPointer<Int32>, into proposals: inout ExpertList) {
        guard layer + 1 < layers else { return }
        let next = step * layers + layer + 1
        proposals.append(accessExpert, in: Int(layerStart[next])..<Int(layerStart[next + 1]))
    }
}

/// `prefetch-all`: copy every expert of the next layer during the current one (Pre-gated MoE's MoE-Prefetch
/// baseline). It needs no routing, so at the last layer it copies the first layer's experts for the next step.
public struct AllNextLayerPredictor: PrefetchPredictor {
    let layers: Int
    let experts: Int
    public var source: String { "all" }
    public static var cancelsUnstarted: Bool { false }

    public init(layers: Int, experts: Int) { self.layers = layers; self.experts = experts }

    public func predict(step: Int, layer: Int, revealed: UnsafeBufferPointer<Int32>, into proposals: inout ExpertList) {
        let base = Int32((layer + 1) % layers * experts)
        proposals.append(consecutiveFrom: base, count: experts)
    }
}

/// `cross-layer-gate` (Fate, arXiv 2502.12224): layer l+1's gate applied to layer l's input predicts l+1's experts.
/// Without recorded predictions in the trace it is modelled: each true expert of layer l+1 is predicted with
/// probability `accuracy`, otherwise replaced by a wrong one drawn uniformly (seeded, source "modelled"). Like the
/// pre-gate, it has no input for the next token's first layer: at the last layer it proposes nothing.
public struct ModelledCrossLayerPredictor: PrefetchPredictor {
    var plan: StepPlan
    let accuracy: Double
    var rng: SplitMix64
    public var source: String { "modelled" }

    public init(plan: StepPlan, accuracy: Double, seed: UInt64) {
        self.plan = plan
        self.accuracy = accuracy
        rng = SplitMix64(seed: seed)
    }

    public mutating func predict(step: Int, layer: Int, revealed: UnsafeBufferPointer<Int32>, into proposals: inout ExpertList) {
        guard layer + 1 < plan.layers else { return }
        let range = plan.accessRange(step: step, layer: layer + 1)
        let start = proposals.count
        let base = Int32((layer + 1) * plan.experts)
        for a in range {
            let truth = plan.accessExpert[a]
            if rng.nextDouble() < accuracy { proposals.append(truth); continue }
            // A wrong expert: not in the true set and not proposed yet (give up if every expert is taken).
            for _ in 0..<(4 * plan.experts) {
                let guess = base + Int32(rng.nextInt(below: plan.experts))
                if !plan.accessExpert[range].contains(guess) && !proposals.contains(guess, from: start) {
                    proposals.append(guess)
                    break
                }
            }
        }
    }
}

/// `cross-layer-gate` with the predictions recorded in the trace's `pred` field (source "trace"). A token's `pred`
/// for layer 0 is what the recorder predicted for it at the previous token's last layer: proposed there, across
/// the step boundary.
public struct RecordedPredictor: PrefetchPredictor {
    var plan: StepPlan
    var following: StepPlan?
    public var source: String { "trace" }

    public init(plan: StepPlan) { self.plan = plan }

    public func predict(step: Int, layer: Int, revealed: UnsafeBufferPointer<Int32>, into proposals: inout ExpertList) {
        if layer + 1 < plan.layers {
            proposals.append(plan.predictedExpert, in: plan.predictionRange(step: step, layer: layer + 1))
        } else if step + 1 < plan.steps {
            proposals.append(plan.predictedExpert, in: plan.predictionRange(step: step + 1, layer: 0))
        } else if let next = following, next.steps > 0 {
            proposals.append(next.predictedExpert, in: next.predictionRange(step: 0, layer: 0))
        }
    }
}

/// `affinity` (ExFlow / MoE-Infinity style): online conditional frequencies of (layer l expert → layer l+1 expert),
/// learned from the routing revealed so far, never from the future. It proposes as many experts as layer l used,
/// ranked by Σ over layer l's experts of how often each candidate followed them. The last layer is followed by the
/// next step's first (the same token's next step, or the next sequence's first): it learns and predicts across the
/// step boundary too.
///
/// Each (layer, expert) keeps its `followers` most frequent successors with the Space-Saving algorithm (Metwally,
/// Agrawal and El Abbadi 2005): a successor not in the list replaces the weakest entry and inherits its count plus
/// one, so counts are exact for successors that never left the list and over-estimates otherwise. A prediction
/// costs O(|S_l| · followers), and memory is O(layers · experts · followers), not O(layers · experts²).
/// A class over raw buffers: it is updated |S_l|·|S_l+1| times per layer, and its scratch lists (the previous
/// layer's set, the touched candidates, the ranking) are refilled every layer.
public final class AffinityPredictor: PrefetchPredictor {
    let layers: Int
    let experts: Int
    let followers: Int
    /// Slots per row: `followers` rounded up to whole 64-bit words of four ids (the padding stays empty).
    private let stride: Int
    /// Successors of flat id i at `(i * stride) ..< (i * stride + followers)`, strongest first, as ids within the
    /// next layer (at most 65,533: `Limits.experts`); the first `filled[i]` slots are taken (a row fills from the
    /// front and never empties), the others hold `AffinityPredictor.empty`.
    private let topIDs: UnsafeMutablePointer<UInt16>
    private let topCounts: UnsafeMutablePointer<Int32>
    private let filled: UnsafeMutablePointer<Int32>
    /// Per candidate of the next layer: its summed count in the prediction under way (0 when untouched).
    private let score: UnsafeMutablePointer<Int32>
    private var previous: ExpertList
    private var previousLayer = -1
    private var touched: ExpertList
    private var ranked: ExpertList
    public var source: String { "online" }

    public init(layers: Int, experts: Int, followers: Int = 16) {
        self.layers = layers
        self.experts = experts
        self.followers = min(followers, experts)
        stride = (self.followers + 3) / 4 * 4
        let slots = layers * experts * stride
        topIDs = .allocate(capacity: slots); topIDs.initialize(repeating: Self.empty, count: slots)
        topCounts = .allocate(capacity: slots); topCounts.initialize(repeating: 0, count: slots)
        filled = .allocate(capacity: layers * experts); filled.initialize(repeating: 0, count: layers * experts)
        score = .allocate(capacity: experts); score.initialize(repeating: 0, count: experts)
        previous = ExpertList(capacity: experts)
        touched = ExpertList(capacity: experts + 1)  // + 1: `append(_:if:)` writes one past what it keeps
        ranked = ExpertList(capacity: experts)
    }

    deinit {
        topIDs.deallocate(); topCounts.deallocate(); filled.deallocate(); score.deallocate()
        previous.deallocate(); touched.deallocate(); ranked.deallocate()
    }

    public func predict(step: Int, layer: Int, revealed: UnsafeBufferPointer<Int32>, into proposals: inout ExpertList) {
        // Locals: stores through `score` would otherwise make the compiler reload every property per iteration.
        let topIDs = self.topIDs, topCounts = self.topCounts, filled = self.filled, score = self.score
        let stride = self.stride
        let offset = Int32(layer * experts)
        // Learn: the layer revealed before (the previous layer, or the previous step's last) was followed by this one.
        if previousLayer >= 0 && (previousLayer + 1) % layers == layer {
            for i in previous.elements { for j in revealed { record(from: Int(i), to: j - offset) } }
        }
        previous.removeAll()
        previous.append(contentsOf: revealed)
        previousLayer = layer
        guard !revealed.isEmpty else { return }
        // Predict layer + 1: sum each candidate's counts over the revealed experts.
        var touched = self.touched
        touched.removeAll()
        for i in revealed {
            let row = Int(i) * stride
            for f in 0..<Int(filled[Int(i)]) {
                let j = Int32(topIDs[row + f])
                touched.append(j, if: score[Int(j)] == 0)  // no branch: whether a candidate is new is a coin toss
                score[Int(j)] &+= topCounts[row + f]
            }
        }
        self.touched = touched
        rankBest(min(revealed.count, touched.count))
        let base = Int32((layer + 1) % layers * experts)
        for j in ranked.elements { proposals.append(base + j) }
        for j in touched.elements { score[Int(j)] = 0 }
    }

    /// Fills `ranked` with the `k` touched candidates of highest score (ties: lower id), best first, in one pass
    /// over `touched` with an insertion into the short sorted list.
    private func rankBest(_ k: Int) {
        var ranked = self.ranked
        defer { self.ranked = ranked }
        ranked.removeAll()
        guard k > 0 else { return }
        let score = self.score
        func outranks(_ a: Int32, _ b: Int32) -> Bool {
            score[Int(a)] > score[Int(b)] || (score[Int(a)] == score[Int(b)] && a < b)
        }
        for j in touched.elements {
            if ranked.count == k {
                guard outranks(j, ranked[k - 1]) else { continue }
                ranked.removeLast()
            }
            ranked.append(j)
            var slot = ranked.count - 1
            while slot > 0 && outranks(j, ranked[slot - 1]) {
                ranked[slot] = ranked[slot - 1]
                slot -= 1
            }
            ranked[slot] = j
        }
    }

    /// An empty slot: no id of a layer (`Limits.experts` keeps them below it).
    static let empty = UInt16.max

    /// Counts that expert `j` of the next layer followed flat expert `i`.
    @inline(__always) private func record(from i: Int, to j: Int32) {
        let followers = self.followers
        let ids = topIDs + i * stride, counts = topCounts + i * stride, taken = Int(filled[i])
        // Its own slot, else the first empty one, else the weakest: Space-Saving replaces it.
        var slot = taken < followers ? taken : followers - 1
        if let found = Self.slot(of: UInt16(truncatingIfNeeded: j), in: ids, words: stride / 4) { slot = found }
        if slot == taken { filled[i] = Int32(taken + 1) }
        let c = counts[slot] &+ 1
        while slot > 0 && counts[slot - 1] < c {  // keep the list sorted, strongest first
            ids[slot] = ids[slot - 1]; counts[slot] = counts[slot - 1]
            slot -= 1
        }
        ids[slot] = UInt16(truncatingIfNeeded: j); counts[slot] = c
    }

    /// The slot of `id` in a row of `words` × 4 ids, or nil: four ids compared at once in a 64-bit word (a lane
    /// that equals `id` becomes zero, and the lowest zero lane is flagged exactly; lanes above it may be flagged
    /// falsely, so only the lowest is read). Empty slots never match.
    @inline(__always) static func slot(of id: UInt16, in ids: UnsafeMutablePointer<UInt16>, words: Int) -> Int? {
        let lanes: UInt64 = 0x0001_0001_0001_0001
        let pattern = UInt64(id) &* lanes
        let raw = UnsafeRawPointer(ids)
        for w in 0..<words {
            let x = UInt64(littleEndian: raw.load(fromByteOffset: w * 8, as: UInt64.self)) ^ pattern
            let zero = (x &- lanes) & ~x & (lanes &<< 15)
            if zero != 0 { return w * 4 + zero.trailingZeroBitCount / 16 }
        }
        return nil
    }
}

extension ModelledCrossLayerPredictor {
    public mutating func rebind(_ plan: StepPlan, following: StepPlan?) { self.plan = plan }
}
extension RecordedPredictor {
    public mutating func rebind(_ plan: StepPlan, following: StepPlan?) { self.plan = plan; self.following = following }
}
