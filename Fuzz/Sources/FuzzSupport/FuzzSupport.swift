#if canImport(Glibc)
import Glibc
#endif
import MoESim

@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

/// What every fuzz target shares: the input as bytes or text, and the one rule each target checks, that a reader
/// either returns a value that keeps its invariants or throws one of moesim's errors. A trap, an out-of-memory or
/// a time-out is a finding (libFuzzer stops and saves the input).
public enum Fuzz {
    /// Hands the process to libFuzzer with `testOneInput` as the target. Called from each target's `main.swift`
    /// (SwiftPM links an executable's own entry point, so libFuzzer's `main` is reached through its driver).
    public static func run(_ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Never {
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, testOneInput))
    }

    public static func bytes(_ data: UnsafePointer<UInt8>?, _ count: Int) -> [UInt8] {
        Array(UnsafeBufferPointer(start: data, count: count))
    }

    /// The input as text when it is UTF-8 (YAML files are read as UTF-8 and refused otherwise).
    public static func text(_ data: UnsafePointer<UInt8>?, _ count: Int) -> String? {
        String(validating: bytes(data, count), as: UTF8.self)
    }

    /// Runs `body`; moesim's own errors are the expected way to refuse an input, anything else is a finding.
    public static func expectingMoESimErrors(_ body: () throws -> Void) {
        do { try body() } catch is TraceError {} catch is ConfigError {} catch {
            fatalError("an error that is not moesim's: \(error)")
        }
    }

    /// Checks what every trace that loads must hold, then builds its step plan (the next thing a replay does).
    public static func checkTrace(_ trace: RoutingTrace) {
        let h = trace.header
        precondition(Limits.layers.contains(h.layers) && Limits.experts.contains(h.experts) && h.topK <= h.experts)
        precondition(trace.experts.count == trace.tokenCount * h.layers * h.topK)
        precondition(trace.weights.isEmpty || trace.weights.count == trace.experts.count)
        for id in trace.experts { precondition(id == TokenRecord.missing || Int(id) < h.experts, "id out of range") }
        for (i, w) in trace.weights.enumerated() where trace.experts[i] != TokenRecord.missing {
            precondition(Limits.gateWeight.contains(Double(w)), "weight out of range")
        }
        for s in trace.seq { precondition(s >= 0) }
        for p in trace.pos { precondition(p >= 0) }
        let plan = StepPlan(trace)
        precondition(plan.accesses <= trace.recordedRoutings)
    }

    /// What a replay does with `spec`, on a small synthetic trace of its model's shape: the checks a sweep makes
    /// before any cell runs (`Replayer.check`), then the replay itself (serving, runtime and placement settings
    /// included), whose counters must add up. Models too large to replay quickly are checked only.
    public static func replaySmall(_ spec: ReplaySpec) throws {
        let model = spec.model
        try model.validate()
        var shape = SyntheticTraceSpec(tokens: 12)
        shape.sequences = 3
        shape.prefillTokens = 2
        let trace = try SyntheticTraceGenerator(model: model, spec: shape).makeTrace(name: "fuzz")
        let plan = StepPlan(trace)
        try Replayer.check(trace: trace, plan: plan, spec: spec)
        guard model.layers * model.topK <= 256 else { return }
        let result = try Replayer.replay(trace: trace, plan: plan, spec: spec)
        let c = result.counters
        precondition(c.hits + c.misses == c.accesses, "hits + misses != accesses")
        precondition(result.simSeconds.isFinite && result.simSeconds >= 0, "simulated time \(result.simSeconds)")
    }
}
