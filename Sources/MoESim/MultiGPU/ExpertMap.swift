import Foundation

/// Which GPUs hold each expert under expert parallelism (`placement.expert_map`, docs/multigpu.md), computed before
/// the run from the trace's routed tokens per expert, or read from a file.
///
///     let map = try ExpertMap(.replicated, gpus: 4, plan: plan, redundant: 8)
///     map.replicas[e]   // the GPUs of flat expert e, in the order tokens are dealt to them
///
/// Invariant: every expert has at least one replica, each on a GPU in 0 ..< gpus, at most `gpus` of them.
public struct ExpertMap: Sendable, Equatable {
    /// How the map is made.
    public enum Kind: Sendable, Equatable, CustomStringConvertible {
        /// Expert e of every layer on GPU e mod G.
        case roundRobin
        /// Per layer, experts by routed tokens, most first, each on the GPU with the fewest tokens so far among
        /// those with a free slot (⌈E / G⌉ slots each): equal routed tokens per GPU, as far as whole experts allow.
        case frequencyBalanced
        /// DeepSeek's EPLB (deepseek-ai/EPLB, `replicate_experts` and `balanced_packing`): `redundant_experts` extra
        /// replicas per layer, each to the expert with the most tokens per replica; then the replicas, heaviest
        /// first, each on the GPU with the least load among those with a free slot (⌈(E + R) / G⌉ slots each).
        case replicated
        /// ExFlow (arXiv 2401.08383): experts that tokens use in consecutive layers on one GPU. Layer 0 as
        /// `frequencyBalanced`; then per layer, experts by routed tokens, most first, each on the GPU (with a free slot
        /// of ⌈E / G⌉) whose previous-layer experts it follows most often in one-token steps (ties: the GPU with the
        /// fewest tokens, then the lower GPU). A greedy stand-in for ExFlow's integer program.
        case affinity
        /// MoETuner (arXiv 2502.06643) as a greedy heuristic: token load and inter-layer traffic in one objective
        /// (`MapObjective`): layer 0 as `frequencyBalanced`; then per layer, experts by routed tokens, most first,
        /// each on the GPU with a free slot whose choice adds least to the layer's largest GPU load plus the
        /// one-token-step transitions into the expert from experts on other GPUs (ties: fewest tokens, lower GPU).
        case balancedComm
        /// A JSON file: `{"gpus": G, "layers": [[[gpu, ...] per expert] per layer]}`.
        case file(String)

        public init(_ text: String) throws {
            switch text {
            case "round-robin": self = .roundRobin
            case "frequency-balanced": self = .frequencyBalanced
            case "replicated": self = .replicated
            case "affinity": self = .affinity
            case "balanced-comm": self = .balancedComm
            default:
                guard text.hasSuffix(".json") else {
                    throw ConfigError.invalidValue(field: "placement.expert_map", value: text,
                                                   expected: "round-robin, frequency-balanced, replicated, affinity, balanced-comm, or a placement file ending in .json")
                }
                self = .file(text)
            }
        }

        public var description: String {
            switch self {
            case .roundRobin: "round-robin"
            case .frequencyBalanced: "frequency-balanced"
            case .replicated: "replicated"
            case .affinity: "affinity"
            case .balancedComm: "balanced-comm"
            case let .file(path): (path as NSString).lastPathComponent
            }
        }
    }

    public let gpus: Int
    /// Per flat expert (`layer · experts + expert`), the GPUs holding a replica.
    public let replicas: [[Int32]]

    init(gpus: Int, replicas: [[Int32]]) { self.gpus = gpus; self.replicas = replicas }

    /// The map of `kind` for `plan`'s model, from its routed tokens per expert (and, for `affinity`, its one-token
    /// steps' consecutive layers).
    /// - Throws: `ConfigError` for a file that cannot be read or does not fit the model and GPU count, or more
    ///   redundant experts than the GPUs can hold.
    public init(_ kind: Kind, gpus: Int, plan: StepPlan, redundant: Int) throws {
        let loads = MultiGPUReplay.routedTokens(plan), layers = plan.layers, experts = plan.experts
        self.gpus = gpus
        switch kind {
        case .roundRobin:
            replicas = (0..<layers * experts).map { [Int32($0 % experts % gpus)] }
        case .frequencyBalanced:
            replicas = (0..<layers).flatMap { l in
                Self.pack(loads: (0..<experts).map { Double(loads[l * experts + $0]) }, copies: Array(repeating: 1, count: experts), gpus: gpus)
            }
        case .replicated:
            guard redundant <= experts * (gpus - 1) else {
                throw ConfigError.invalidValue(field: "placement.redundant_experts", value: "\(redundant)",
                                               expected: "at most \(experts * (gpus - 1)) (every expert on every one of the \(gpus) GPUs): an expert has at most one replica per GPU")
            }
            replicas = (0..<layers).flatMap { l in
                let load = (0..<experts).map { Double(loads[l * experts + $0]) }
                return Self.pack(loads: load, copies: Self.replicate(load, redundant: redundant, gpus: gpus), gpus: gpus)
            }
        case .affinity:
            replicas = Self.layerByLayer(plan, loads: loads, gpus: gpus, weighsLoad: false)
        case .balancedComm:
            replicas = Self.layerByLayer(plan, loads: loads, gpus: gpus, weighsLoad: true)
        case let .file(path):
            replicas = try Self.read(path, gpus: gpus, layers: layers, experts: experts)
        }
    }

    /// `affinity`'s and `balancedComm`'s greedy placement (see the cases): layer 0 balanced by load, then each layer
    /// after the one before. `weighsLoad`: the cost adds the growth of the layer's largest GPU load to the
    /// transitions from other GPUs, else the GPU with the most transitions from its own experts wins.
    static func layerByLayer(_ plan: StepPlan, loads: [Int], gpus: Int, weighsLoad: Bool) -> [[Int32]] {
        let L = plan.layers, E = plan.experts, slots = (E + gpus - 1) / gpus
        let follows = Transitions(plan)
        var out = pack(loads: (0..<E).map { Double(loads[$0]) }, copies: Array(repeating: 1, count: E), gpus: gpus)
        for l in 1..<max(1, L) {
            let previous = Array(out[((l - 1) * E)..<(l * E)])
            let order = (0..<E).sorted { loads[l * E + $0] != loads[l * E + $1] ? loads[l * E + $0] > loads[l * E + $1] : $0 < $1 }
            var gpuLoad = [Int](repeating: 0, count: gpus), used = [Int](repeating: 0, count: gpus), largest = 0
            var layer = [[Int32]](repeating: [], count: E)
            for e in order {
                var from = [Int](repeating: 0, count: gpus)  // transitions into e from each GPU's experts
                for f in 0..<E { from[Int(previous[f][0])] += follows.count(layer: l, from: f, to: e) }
                let total = from.reduce(0, +), load = loads[l * E + e]
                // Lower is better: `weighsLoad` counts the largest load's growth plus the transitions that cross.
                func cost(_ g: Int) -> Int {
                    weighsLoad ? max(0, gpuLoad[g] + load - largest) + (total - from[g]) : -from[g]
                }
                var best = -1
                for g in 0..<gpus where used[g] < slots {
                    if best < 0 || cost(g) < cost(best) || (cost(g) == cost(best) && gpuLoad[g] < gpuLoad[best]) { best = g }
                }
                layer[e] = [Int32(best)]
                gpuLoad[best] += load
                largest = max(largest, gpuLoad[best])
                used[best] += 1
            }
            out += layer
        }
        return out
    }

    /// EPLB's `replicate_experts`: each extra replica to the expert with the most load per replica (ties: the lower
    /// id), never more replicas than GPUs.
    static func replicate(_ load: [Double], redundant: Int, gpus: Int) -> [Int] {
        var copies = Array(repeating: 1, count: load.count)
        for _ in 0..<redundant {
            var best = -1
            for e in load.indices where copies[e] < gpus {
                if best < 0 || load[e] / Double(copies[e]) > load[best] / Double(copies[best]) { best = e }
            }
            copies[best] += 1
        }
        return copies
    }

    /// EPLB's `balanced_packing` of one layer: the replicas (expert e's `copies[e]`, each carrying `load[e] /
    /// copies[e]`), heaviest first (ties: lower expert), each on the GPU with the least load so far among those
    /// with a free slot and no replica of the same expert (ties: the lower GPU).
    static func pack(loads load: [Double], copies: [Int], gpus: Int) -> [[Int32]] {
        let slots = (copies.reduce(0, +) + gpus - 1) / gpus
        var items: [(expert: Int, load: Double)] = []
        for e in load.indices { for _ in 0..<copies[e] { items.append((e, load[e] / Double(copies[e]))) } }
        items.sort { $0.load != $1.load ? $0.load > $1.load : $0.expert < $1.expert }
        var gpuLoad = Array(repeating: 0.0, count: gpus), used = Array(repeating: 0, count: gpus)
        var out = Array(repeating: [Int32](), count: load.count)
        for item in items {
            var best = -1
            for g in 0..<gpus where used[g] < slots && !out[item.expert].contains(Int32(g)) {
                if best < 0 || gpuLoad[g] < gpuLoad[best] { best = g }
            }
            if best < 0 { best = (0..<gpus).first { !out[item.expert].contains(Int32($0)) }! }  // slots full: any GPU without it
            out[item.expert].append(Int32(best))
            gpuLoad[best] += item.load
            used[best] += 1
        }
        return out
    }

    /// A placement file, checked against the model's shape and the GPU count.
    static func read(_ path: String, gpus: Int, layers: Int, experts: Int) throws -> [[Int32]] {
        func fail(_ message: String) -> ConfigError { .file(path: path, line: nil, message: message) }
        guard let data = FileManager.default.contents(atPath: path) else { throw fail("cannot read this placement file") }
        guard let top = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw fail("a placement file is a JSON object: {\"gpus\": G, \"layers\": [[[gpu, ...] per expert] per layer]}")
        }
        if let g = top["gpus"] as? Int, g != gpus {
            throw fail("gpus: \(g), but hardware.gpus is \(gpus)")
        }
        guard let list = top["layers"] as? [[Any]] else { throw fail("'layers' must be a list of layers, each a list of experts' GPU lists") }
        guard list.count == layers else { throw fail("layers: \(list.count) layers, but the model has \(layers)") }
        var out: [[Int32]] = []
        for (l, row) in list.enumerated() {
            guard row.count == experts else { throw fail("layers[\(l)]: \(row.count) experts, but the model has \(experts) per layer") }
            for (e, cell) in row.enumerated() {
                guard let ids = cell as? [Int] else { throw fail("layers[\(l)][\(e)]: a list of GPU numbers, e.g. [0] or [1, 3]") }
                guard !ids.isEmpty else { throw fail("layers[\(l)][\(e)]: expert \(e) of layer \(l) is on no GPU") }
                guard ids.allSatisfy({ (0..<gpus).contains($0) }) else {
                    throw fail("layers[\(l)][\(e)]: GPU numbers run from 0 to \(gpus - 1), not \(ids)")
                }
                guard Set(ids).count == ids.count else { throw fail("layers[\(l)][\(e)]: a GPU listed twice in \(ids)") }
                out.append(ids.map(Int32.init))
            }
        }
        return out
    }
}

/// How often one-token steps use expert f at layer l − 1 and expert e at layer l (the steps of several tokens keep
/// only their union, so they are left out).
struct Transitions {
    private let experts: Int
    private let counts: [Int32]  // (l · E + f) · E + e, for layers l ≥ 1 (flat: one array, no retain per look-up)

    init(_ plan: StepPlan) {
        let L = plan.layers, E = plan.experts
        experts = E
        var counts = [Int32](repeating: 0, count: L * E * E)
        counts.withUnsafeMutableBufferPointer { c in
            plan.accessExpert.withUnsafeBufferPointer { ids in
                for s in 0..<plan.steps where plan.stepTokens[s] == 1 {
                    for l in 1..<max(1, L) {
                        for a in plan.accessRange(step: s, layer: l - 1) {
                            let row = (l * E + Int(ids[a]) - (l - 1) * E) * E - l * E
                            for b in plan.accessRange(step: s, layer: l) { c[row + Int(ids[b])] += 1 }
                        }
                    }
                }
            }
        }
        self.counts = counts
    }

    @inline(__always) func count(layer l: Int, from f: Int, to e: Int) -> Int { Int(counts[(l * experts + f) * experts + e]) }
}

/// The objective `balanced-comm` lowers, for any map (an expert's first replica standing for it): per layer, the
/// largest GPU's routed tokens plus, from layer 1 on, the one-token-step transitions between experts on different
/// GPUs; summed over layers. Its lower bound: per layer, the larger of the mean GPU load (rounded up) and the
/// busiest expert's load, with no transition crossing.
public struct MapObjective: Sendable, Equatable {
    public let value: Int
    public let lowerBound: Int

    init(_ map: ExpertMap, plan: StepPlan) {
        let L = plan.layers, E = plan.experts, G = map.gpus
        let loads = MultiGPUReplay.routedTokens(plan)
        let gpuOf = map.replicas.map { $0[0] }  // flat: the nested arrays cost a retain per look-up
        var value = 0, bound = 0
        for l in 0..<L {
            var gpuLoad = [Int](repeating: 0, count: G)
            for e in 0..<E { gpuLoad[Int(gpuOf[l * E + e])] += loads[l * E + e] }
            let layerLoads = loads[(l * E)..<((l + 1) * E)]
            value += gpuLoad.max()!
            bound += max((layerLoads.reduce(0, +) + G - 1) / G, layerLoads.max()!)
        }
        // The crossing transitions, counted straight from the one-token steps (what `Transitions` tallies per pair,
        // without its layers × experts² table).
        gpuOf.withUnsafeBufferPointer { gpuOf in
            plan.accessExpert.withUnsafeBufferPointer { ids in
                for s in 0..<plan.steps where plan.stepTokens[s] == 1 {
                    for l in 1..<max(1, L) {
                        for a in plan.accessRange(step: s, layer: l - 1) {
                            let from = gpuOf[Int(ids[a])]
                            for b in plan.accessRange(step: s, layer: l) where gpuOf[Int(ids[b])] != from { value += 1 }
                        }
                    }
                }
            }
        }
        self.value = value; lowerBound = bound
    }
}
