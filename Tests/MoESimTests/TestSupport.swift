import Foundation
@testable import MoESim

/// The package root, found from this file's path, so tests read `traces/` wherever they run.
let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// The real traces beside the checkout, or nil when they are absent (tests that need them are skipped, and say so:
/// `@Test(.needsRealTraces)`).
let realTracesFolder: String? = {
    let path = packageRoot + "/../shared/traces-real"
    return FileManager.default.fileExists(atPath: path + "/SOURCES.md") ? path : nil
}()

/// A small model with round numbers, so closed forms are easy to write: 200 kB experts.
func tinyModel(layers: Int = 2, experts: Int = 4, topK: Int = 2) -> ModelProfile {
    ModelProfile(name: "tiny-\(layers)x\(experts)", layers: layers, experts: experts, topK: topK, hidden: 100,
                 expertFFN: 500, matrices: 2, nonExpertParamsPerLayer: 50_000)
}

/// Hardware with round numbers: 1 GB/s link with 1 µs latency, 1 µs launches.
func tinyHardware(engines: Int = 1) -> HardwareProfile {
    HardwareProfile(name: "tiny-gpu", gpuMemoryBytes: 1e12, hbmBytesPerSecond: 1e11, gpuFlops: 1e12,
                    linkBytesPerSecond: 1e9, linkLatencySeconds: 1e-6, copyEngines: engines, kernelLaunchSeconds: 1e-6)
}

/// A trace from literal cells: `tokens[t][l]` is the ids of token t at layer l (nil for a null cell).
func makeTrace(_ tokens: [[[Int]?]], experts: Int, topK: Int, phases: [Phase]? = nil, seqs: [Int]? = nil) -> RoutingTrace {
    let layers = tokens.first?.count ?? 1
    let header = TraceHeader(model: "test", layers: layers, experts: experts, topK: topK)
    var trace = RoutingTrace(header: header, name: "test")
    var record = TokenRecord(layers: layers, topK: topK)
    var pos = 0
    for (t, cells) in tokens.enumerated() {
        record.seq = seqs?[t] ?? 0
        if t > 0 && record.seq != (seqs?[t - 1] ?? 0) { pos = 0 }
        record.pos = pos
        pos += 1
        record.phase = phases?[t] ?? .decode
        for (l, cell) in cells.enumerated() {
            for j in 0..<topK { record.experts[l * topK + j] = cell.map { UInt16($0[j]) } ?? TokenRecord.missing }
        }
        trace.append(record)
    }
    return trace
}

/// A seeded Zipf trace of the given shape (the property tests' workload).
func zipfTrace(seed: UInt64, layers: Int, experts: Int, topK: Int, tokens: Int, skew: Double = 0.8,
               reuse: Double = 0.2, sequences: Int = 2, prefill: Int = 4) -> RoutingTrace {
    let model = tinyModel(layers: layers, experts: experts, topK: topK)
    var spec = SyntheticTraceSpec(tokens: tokens, seed: seed)
    spec.zipfSkew = skew
    spec.reuse = reuse
    spec.sequences = sequences
    spec.prefillTokens = prefill
    return try! SyntheticTraceGenerator(model: model, spec: spec).makeTrace()
}

/// Replays and also returns the ordered event log.
func replayLogged(_ trace: RoutingTrace, model: ModelProfile, hardware: HardwareProfile = tinyHardware(),
                  policy: PolicyKind, budget: Budget, scope: CacheScope = .global,
                  prefetch: PrefetchOptions = PrefetchOptions()) throws -> (ReplayResult, [ScheduledEvent]) {
    var log = EventLog()
    let spec = ReplaySpec(model: model, hardware: hardware, policy: policy, scope: scope, budget: budget, prefetch: prefetch)
    let result = try Replayer.run(plan: StepPlan(trace), traceName: trace.name, spec: spec, sink: &log)
    return (result, log.drain())
}

func replay(_ trace: RoutingTrace, model: ModelProfile, hardware: HardwareProfile = tinyHardware(),
            policy: PolicyKind, budget: Budget, scope: CacheScope = .global,
            prefetch: PrefetchOptions = PrefetchOptions()) throws -> ReplayResult {
    let spec = ReplaySpec(model: model, hardware: hardware, policy: policy, scope: scope, budget: budget, prefetch: prefetch)
    return try Replayer.run(plan: StepPlan(trace), traceName: trace.name, spec: spec)
}

/// A fresh temporary directory for one test.
func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "moesim-test-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Writes `text` to a file in a fresh temporary directory and returns its path.
func writeTemporary(_ text: String, name: String = "trace.jsonl") -> String {
    let path = temporaryDirectory() + "/" + name
    try! text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

import Testing

extension Trait where Self == ConditionTrait {
    /// Runs a test only when ../shared/traces-real is there; otherwise it is reported as skipped, with the reason.
    static var needsRealTraces: Self { .enabled(if: realTracesFolder != nil, "../shared/traces-real is absent") }
}
