/// How requests arrive and are batched (docs/serving.md). The default, `sequential`, is batch-1 replay in the trace's
/// order with no notion of arrival, as before batching existed.
///
///     serving: {scheduler: continuous, max_seqs: 16, max_tokens: 2048, arrivals: "poisson:2", slo_ttft_s: 2, slo_tpot_s: 0.2}
///
/// The same keys are sweep axes (`serving.batch`, `serving.arrivals`, …) and `--set`-style text.
public struct ServingOptions: OptionSection {
    public static let section = "serving"
    public static let keys = ["scheduler", "batch", "max_seqs", "max_tokens", "prefill_chunk", "arrivals", "slo_ttft_s", "slo_tpot_s"]

    public enum Scheduler: String, Sendable, CaseIterable {
        /// Batch 1, the trace's order: a sequence's prefill is one step, each decode token one step.
        case sequential
        /// `batch` requests at a time, run to completion: their prefills as one step, then their decode tokens
        /// together (the offloading papers' batch).
        case `static`
        /// Orca/vLLM style: at each step boundary, admit arrived requests up to `maxSeqs`; each running request in
        /// decode adds one token, those in prefill a chunk of at most `prefillChunk`, within `maxTokens` per step.
        case continuous
    }

    public var scheduler: Scheduler = .sequential
    /// Requests per batch, for `static`.
    public var batch = 1
    /// Requests running at once, and tokens per step, for `continuous`.
    public var maxSeqs = 16
    public var maxTokens = 2048
    public var prefillChunk = 512
    public var arrivals: ArrivalProcess = .allAtOnce
    /// A request meets the SLO when its TTFT and its TPOT are both at most these (seconds); nil: no goodput.
    public var slo: ServiceLevel?

    public init() {}

    /// The requests batched at most at once: 1, `batch` or `maxSeqs`.
    public var batchLimit: Int {
        switch scheduler {
        case .sequential: 1
        case .static: batch
        case .continuous: maxSeqs
        }
    }

    public mutating func set(_ key: String, to text: String, origin: String) throws {
        switch key {
        case "scheduler":
            guard let v = Scheduler(rawValue: text) else {
                throw ConfigError.invalidValue(field: "serving.scheduler", value: text, expected: "sequential, static or continuous")
            }
            scheduler = v
        case "batch": batch = try Self.integer(key, text, in: Limits.batch)
        case "max_seqs": maxSeqs = try Self.integer(key, text, in: Limits.batch)
        case "max_tokens": maxTokens = try Self.integer(key, text, in: Limits.stepTokens)
        case "prefill_chunk": prefillChunk = try Self.integer(key, text, in: Limits.stepTokens)
        case "arrivals": arrivals = try ArrivalProcess.parse(text, field: "serving.arrivals")
        case "slo_ttft_s":
            slo = ServiceLevel(ttftSeconds: try Self.number(key, text, in: Limits.sloSeconds), tpotSeconds: slo?.tpotSeconds ?? .nan)
        case "slo_tpot_s":
            slo = ServiceLevel(ttftSeconds: slo?.ttftSeconds ?? .nan, tpotSeconds: try Self.number(key, text, in: Limits.sloSeconds))
        default: throw Self.unknown(key, origin: origin)
        }
    }

    /// - Throws: `ConfigError` naming the field that is out of range.
    public func validate() throws {
        try Limits.check(batch, in: Limits.batch, "serving.batch")
        try Limits.check(maxSeqs, in: Limits.batch, "serving.max_seqs")
        try Limits.check(maxTokens, in: Limits.stepTokens, "serving.max_tokens")
        try Limits.check(prefillChunk, in: Limits.stepTokens, "serving.prefill_chunk")
        if scheduler == .continuous && maxTokens < maxSeqs {
            throw ConfigError.invalidValue(field: "serving.max_tokens", value: "\(maxTokens)",
                                           expected: "at least max_seqs (\(maxSeqs)): every running request adds one decode token per step")
        }
        try arrivals.validate()
        if let slo {
            if slo.ttftSeconds.isNaN || slo.tpotSeconds.isNaN {
                throw ConfigError.invalidValue(field: "serving.slo_ttft_s and slo_tpot_s", value: "one of them",
                                               expected: "both: a request meets the SLO by its TTFT and its TPOT")
            }
            for (name, value) in [("serving.slo_ttft_s", slo.ttftSeconds), ("serving.slo_tpot_s", slo.tpotSeconds)]
            where !(value > 0 && value.isFinite) {
                throw ConfigError.invalidValue(field: name, value: "\(value)", expected: "a positive number of seconds")
            }
        }
        if scheduler == .sequential && (arrivals != .allAtOnce || slo != nil) {
            throw ConfigError.invalidValue(field: "serving.scheduler", value: "sequential",
                                           expected: "static or continuous when arrivals or an SLO are given (sequential replays the trace's order with no arrivals)")
        }
    }
}

/// A latency target: time to first token and time per output token, in seconds.
public struct ServiceLevel: Sendable, Equatable {
    public var ttftSeconds: Double
    public var tpotSeconds: Double

    public init(ttftSeconds: Double, tpotSeconds: Double) { self.ttftSeconds = ttftSeconds; self.tpotSeconds = tpotSeconds }
}

/// When requests arrive. Each sequence of the trace is one request, issued in the trace's order.
public enum ArrivalProcess: Sendable, Equatable {
    /// Every request is waiting at time 0.
    case allAtOnce
    /// Exponential gaps of mean 1/rate seconds (the first request arrives after the first gap); seeded.
    case poisson(rate: Double, seed: UInt64)
    /// The trace's own `arrival_s`, given on each sequence's first line.
    case recorded
    /// `users` users, each sending its next request `thinkSeconds` after its previous one finished (the first ones
    /// at time 0).
    case closedLoop(users: Int, thinkSeconds: Double)

    /// The `arrival` column: `all-at-once`, `trace`, `poisson:RATE:SEED`, `closed:USERS:THINK` (what `parse` reads).
    public var label: String {
        switch self {
        case .allAtOnce: "all-at-once"
        case .recorded: "trace"
        case let .poisson(rate, seed): "poisson:\(rate):\(seed)"
        case let .closedLoop(users, think): "closed:\(users):\(think)"
        }
    }

    /// Requests per second of a Poisson process (the `arrival_rate` column); nil for the others.
    public var rate: Double? {
        if case let .poisson(rate, _) = self { return rate }
        return nil
    }

    func validate() throws {
        switch self {
        case .allAtOnce, .recorded: break
        case let .poisson(rate, _): try Limits.check(rate, in: Limits.arrivalRate, "arrivals.rate")
        case let .closedLoop(users, think):
            try Limits.check(users, in: Limits.batch, "arrivals.users")
            try Limits.check(think, in: Limits.thinkSeconds, "arrivals.think_s")
        }
    }

    /// Arrival times (ns) of `requests` for the open processes; nil for a closed loop, whose arrivals depend
    /// on when earlier requests finish.
    /// - Throws: `ConfigError` when `recorded` and a request's first line has no `arrival_s`.
    func openArrivals(_ requests: [ServingRequest], in trace: RoutingTrace) throws -> [Int64]? {
        let count = requests.count
        switch self {
        case .recorded:
            return try requests.map { r in
                guard let t = trace.arrivalSeconds[r.firstToken] else {
                    throw ConfigError.invalidValue(field: "arrivals", value: "trace",
                                                   expected: "an arrival_s on the first line of every sequence of \(trace.name) (sequence \(r.seq) has none)")
                }
                return SimTime(seconds: t).nanoseconds
            }
        case .allAtOnce: return Array(repeating: 0, count: count)
        case let .poisson(rate, seed): return Self.poissonSeconds(count: count, rate: rate, seed: seed).map { SimTime(seconds: $0).nanoseconds }
        case .closedLoop: return nil
        }
    }

    /// The Poisson process's arrival times in seconds (docs/serving.md states the generator).
    static func poissonSeconds(count: Int, rate: Double, seed: UInt64) -> [Double] {
        var rng = SplitMix64(seed: seed), t = 0.0
        return (0..<count).map { _ in
            t += -log(1 - rng.nextDouble()) / rate  // 1 - u in (0, 1]: the log is finite
            return t
        }
    }

    /// An upper bound of the time (s) the arrivals add to a run of `requests` requests beyond its work: the last
    /// open arrival, or every think time of a closed loop one after another.
    func horizonSeconds(requests: Int, in trace: RoutingTrace) -> Double {
        switch self {
        case .allAtOnce: 0
        case .recorded: trace.arrivalSeconds.values.max() ?? 0
        case let .poisson(rate, seed): Self.poissonSeconds(count: requests, rate: rate, seed: seed).last ?? 0
        case let .closedLoop(_, think): Double(requests) * think
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension ArrivalProcess {
    /// Reads the `arrival` column's form back: `all-at-once`, `poisson:RATE` or `poisson:RATE:SEED` (seed 1),
    /// `closed:USERS:THINK_S`.
    /// - Throws: `ConfigError` naming `field` for any other text or a number out of range.
    public static func parse(_ text: String, field: String = "arrivals") throws -> ArrivalProcess {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let bad = ConfigError.invalidValue(field: field, value: text,
                                           expected: "all-at-once, trace, poisson:RATE[:SEED] or closed:USERS:THINK_S")
        let process: ArrivalProcess
        switch (parts[0], parts.count) {
        case ("all-at-once", 1): process = .allAtOnce
        case ("trace", 1): process = .recorded
        case ("poisson", 2), ("poisson", 3):
            guard let rate = DecimalText.double(parts[1]), let seed = parts.count == 3 ? UInt64(parts[2]) : 1 else { throw bad }
            process = .poisson(rate: rate, seed: seed)
        case ("closed", 3):
            guard let users = DecimalText.integer(parts[1]), let think = DecimalText.double(parts[2]) else { throw bad }
            process = .closedLoop(users: users, thinkSeconds: think)
        default: throw bad
        }
        try process.validate()
        return process
    }
}
