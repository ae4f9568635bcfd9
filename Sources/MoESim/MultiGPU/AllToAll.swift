/// The interconnect's work per step-layer (docs/simulation.md, "Several GPUs"): the dispatch of each token's hidden
/// state to the GPUs of its experts other than the one it is on, and the combine of their outputs onto the GPU it
/// goes to. A token is on its sequence's GPU (seq mod G: data-parallel attention) before and after every layer; with
/// `token_location: expert` a token that is alone in its part of the step (a decode token) stays after a layer on the
/// GPU that computed most of its routes (ties: where it was, if among them, else the lower GPU), and returns to its
/// sequence's GPU after the last layer.
///
/// An all-to-all lasts the interconnect's latency plus the most tokens any one GPU sends or receives within its node
/// over the in-node rate, or, when more, the most it sends or receives across nodes over the inter-node rate; 0 when
/// no token crosses. Steps are added as the run goes (`addLayer`), so a served run, whose steps are formed online,
/// and a replay of the trace's order share the rule.
final class AllToAll {
    /// Per step-layer (s · L + l, in the order added): the dispatch's and the combine's duration.
    private(set) var dispatch: [Int64] = []
    private(set) var combine: [Int64] = []
    /// Per step-layer with routes: most tokens on one GPU over the mean (tokens / G).
    private(set) var imbalance: [Double] = []
    /// Routed (token, expert) pairs, and those dispatched off the token's GPU.
    private(set) var routes = 0
    private(set) var crossingRoutes = 0
    /// Tokens moved both ways.
    private var moved = 0
    let gpus: Int
    private let perNode: Int
    private let tokenBytes: Double
    private let rate: Double, interRate: Double, latency: Double
    private let follows: Bool
    /// Per GPU, tokens sent and received within its node and across nodes, and computed there (this layer).
    private let sendNear: UnsafeMutablePointer<Int>, sendFar: UnsafeMutablePointer<Int>
    private let receiveNear: UnsafeMutablePointer<Int>, receiveFar: UnsafeMutablePointer<Int>
    private let computed: UnsafeMutablePointer<Int>

    /// Bytes both ways.
    var bytes: Int { Int((Double(moved) * tokenBytes).rounded()) }

    init(gpus: Int, spec: ReplaySpec) {
        self.gpus = gpus
        perNode = spec.hardware.gpusPerNode > 0 ? spec.hardware.gpusPerNode : gpus
        tokenBytes = Double(spec.model.hidden) * spec.model.bytesPerParam
        rate = spec.hardware.interconnectBytesPerSecond
        interRate = spec.hardware.internodeBytesPerSecond
        latency = spec.hardware.interconnectLatencySeconds
        follows = spec.placement.tokenLocation == .expert
        sendNear = .allocate(capacity: gpus); sendFar = .allocate(capacity: gpus)
        receiveNear = .allocate(capacity: gpus); receiveFar = .allocate(capacity: gpus)
        computed = .allocate(capacity: gpus)
    }

    /// The traffic of every step of `plan`, replayed in its order (one sequence per step: one group).
    convenience init(plan: StepPlan, map: ExpertMap, split: TokenSplit, spec: ReplaySpec) {
        self.init(gpus: map.gpus, spec: spec)
        let groups = TokenGroups(gpus: gpus, capacity: 1)
        dispatch.reserveCapacity(plan.steps * plan.layers); combine.reserveCapacity(plan.steps * plan.layers)
        for s in 0..<plan.steps {
            groups.start(count: 1)
            groups.place(0, home: Int(plan.stepSeq[s]) % gpus, single: plan.stepTokens[s] == 1)
            for l in 0..<plan.layers {
                groups.clearLoads()
                for a in plan.accessRange(step: s, layer: l) {
                    split.forEachShare(plan.accessTokens[a], of: plan.accessExpert[a], step: s) { g, n in groups.load[g] += Int(n) }
                }
                addLayer(groups, last: l == plan.layers - 1)
            }
        }
    }

    deinit {
        sendNear.deallocate(); sendFar.deallocate(); receiveNear.deallocate(); receiveFar.deallocate(); computed.deallocate()
    }

    /// Adds one layer of a step whose tokens are `groups` (their loads filled for this layer), and moves each group
    /// to where it goes after the layer (`last`: home).
    func addLayer(_ groups: TokenGroups, last: Bool) {
        if groups.count == 1 { return addLayer(ofOneGroup: groups, last: last) }
        let G = gpus
        clear()
        for i in 0..<groups.count {
            let at = groups.at[i], load = groups.load + i * G
            var total = 0
            for x in 0..<G where load[x] > 0 {
                total += load[x]; computed[x] += load[x]
                if x != at { carry(load[x], from: at, to: x) }
            }
            var to = groups.home[i]
            if follows && groups.single[i] && !last {
                to = at
                for x in 0..<G where load[x] > load[to] { to = x }
            }
            groups.next[i] = to
            let out = total - load[at], back = total - load[to]
            moved += out + back; routes += total; crossingRoutes += out
        }
        dispatch.append(duration())
        var total = 0, most = 0
        for x in 0..<G { total += computed[x]; most = max(most, computed[x]) }
        if total > 0 { imbalance.append(Double(most) / (Double(total) / Double(G))) }
        clear()
        for i in 0..<groups.count {
            let to = groups.next[i], load = groups.load + i * G
            for x in 0..<G where x != to && load[x] > 0 { carry(load[x], from: x, to: to) }
            groups.at[i] = to
        }
        combine.append(duration())
    }

    /// `addLayer` for one group (a step in the trace's order), by the same rule: its GPU sends every token it
    /// dispatches and receives every output it gathers, more than any other GPU receives or sends, so each
    /// all-to-all is the hub's (`hub`), with no per-GPU tallies.
    private func addLayer(ofOneGroup groups: TokenGroups, last: Bool) {
        let G = gpus, at = groups.at[0], load = groups.load
        var total = 0, most = 0
        for x in 0..<G { total += load[x]; most = max(most, load[x]) }
        var to = groups.home[0]
        if follows && groups.single[0] && !last {
            to = at
            for x in 0..<G where load[x] > load[to] { to = x }
        }
        dispatch.append(hub(at, load))
        combine.append(hub(to, load))
        if total > 0 { imbalance.append(Double(most) / (Double(total) / Double(G))) }
        let out = total - load[at], back = total - load[to]
        moved += out + back; routes += total; crossingRoutes += out
        groups.at[0] = to
    }

    /// An all-to-all between GPU `h` and the GPUs computing `load` (none of it on `h` crosses).
    @inline(__always) private func hub(_ h: Int, _ load: UnsafeMutablePointer<Int>) -> Int64 {
        var near = 0, far = 0
        for x in 0..<gpus where x != h { if x / perNode == h / perNode { near += load[x] } else { far += load[x] } }
        return duration(near: near, far: far)
    }

    @inline(__always) private func clear() {
        for x in 0..<gpus { sendNear[x] = 0; sendFar[x] = 0; receiveNear[x] = 0; receiveFar[x] = 0; computed[x] = 0 }
    }

    @inline(__always) private func carry(_ n: Int, from a: Int, to b: Int) {
        if a / perNode == b / perNode { sendNear[a] += n; receiveNear[b] += n } else { sendFar[a] += n; receiveFar[b] += n }
    }

    /// The all-to-all's duration for the tokens carried since `clear`.
    @inline(__always) private func duration() -> Int64 {
        var near = 0, far = 0
        for x in 0..<gpus {
            near = max(near, sendNear[x], receiveNear[x])
            far = max(far, sendFar[x], receiveFar[x])
        }
        return duration(near: near, far: far)
    }

    /// An all-to-all whose busiest GPU carries `near` tokens within its node and `far` across nodes.
    @inline(__always) private func duration(near: Int, far: Int) -> Int64 {
        guard near + far > 0 else { return 0 }
        let farSeconds = far > 0 ? Double(far) * tokenBytes / interRate : 0
        return SimTime(seconds: latency + max(Double(near) * tokenBytes / rate, farSeconds)).nanoseconds
    }
}

/// A step's tokens in groups that move together (a request's part of the step), each group's tokens per computing
/// GPU at the current layer, and where each group is. Raw buffers reused from step to step.
final class TokenGroups {
    let gpus: Int
    private(set) var count = 0
    /// The most groups a step may have (the scheduler's batch limit).
    let capacity: Int
    /// Group-major: `load[i · G + g]`, group i's tokens computed on GPU g at this layer.
    let load: UnsafeMutablePointer<Int>
    let at: UnsafeMutablePointer<Int>
    let next: UnsafeMutablePointer<Int>
    let home: UnsafeMutablePointer<Int>
    /// Whether the group is one token (it may follow its experts: `token_location: expert`).
    let single: UnsafeMutablePointer<Bool>

    init(gpus: Int, capacity: Int) {
        self.gpus = gpus
        self.capacity = max(1, capacity)
        load = .allocate(capacity: self.capacity * gpus)
        at = .allocate(capacity: self.capacity); next = .allocate(capacity: self.capacity)
        home = .allocate(capacity: self.capacity); single = .allocate(capacity: self.capacity)
    }

    deinit {
        load.deallocate(); at.deallocate(); next.deallocate(); home.deallocate(); single.deallocate()
        takenCounts?.deallocate()
    }

    /// A new step of `count` groups (placed with `place`).
    func start(count: Int) {
        precondition(count <= capacity, "a step of more groups than the batch limit")
        self.count = count
    }

    /// Group `i` starts the step on its sequence's GPU `home`.
    func place(_ i: Int, home h: Int, single one: Bool) {
        home[i] = h; at[i] = h; single[i] = one
    }

    func clearLoads() { load.update(repeating: 0, count: count * gpus) }

    /// Per expert of a layer, tokens of the step routed to it so far (`TokenSplit.fill`), all zero between calls.
    private var takenCounts: UnsafeMutablePointer<Int32>?
    private var takenCapacity = 0

    func taken(experts: Int) -> UnsafeMutablePointer<Int32> {
        if let takenCounts, takenCapacity >= experts { return takenCounts }
        takenCounts?.deallocate()
        let counts = UnsafeMutablePointer<Int32>.allocate(capacity: experts)
        counts.initialize(repeating: 0, count: experts)
        takenCounts = counts; takenCapacity = experts
        return counts
    }
}

extension TokenSplit {
    /// Fills each group's tokens per GPU at layer `l` of a served step (the run's step `s`) whose group i is the
    /// trace tokens `parts[i]`: the k-th token of the step routed to an expert (parts in order, tokens in order) goes
    /// to its replica (k + s) mod R, the tokens `forEachShare` deals to that replica.
    func fill(_ groups: TokenGroups, layer l: Int, of parts: [Range<Int>], in trace: RoutingTrace, step s: Int) {
        let L = trace.header.layers, K = trace.header.topK, E = trace.header.experts, G = groups.gpus
        groups.clearLoads()
        let taken = groups.taken(experts: E)
        trace.experts.withUnsafeBufferPointer { ids in
            for (i, part) in parts.enumerated() {
                for t in part {
                    let base = (t * L + l) * K
                    guard ids[base] != TokenRecord.missing else { continue }
                    for j in base..<(base + K) {
                        let e = Int(ids[j])
                        groups.load[i * G + replica(of: Int32(l * E + e), token: Int(taken[e]), step: s)] += 1
                        taken[e] += 1
                    }
                }
            }
            for part in parts {  // back to zero for the next layer
                for t in part {
                    let base = (t * L + l) * K
                    guard ids[base] != TokenRecord.missing else { continue }
                    for j in base..<(base + K) { taken[Int(ids[j])] = 0 }
                }
            }
        }
    }
}
