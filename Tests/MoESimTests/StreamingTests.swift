import Foundation
import Testing
@testable import MoESim

/// Streaming replay: chunk by chunk, the same report as the whole trace at once.
@Suite struct StreamingTests {
    static let model = tinyModel(layers: 4, experts: 16, topK: 2)

    @Test(arguments: [UInt64(1), 2, 3, 4])
    func streamingGivesTheWholeTraceReport(seed: UInt64) throws {
        // Odd seeds have prefill runs, which a chunk must never cut.
        let trace = zipfTrace(seed: seed, layers: 4, experts: 16, topK: 2, tokens: 90, sequences: 3,
                              prefill: seed % 2 == 0 ? 0 : 7)
        let path = temporaryDirectory() + "/t-\(seed).jsonl.gz"
        try trace.write(to: path)
        let plan = StepPlan(try RoutingTrace.load(path))  // as written: weights have the file's decimals
        for policy in PolicyKind.allCases where policy != .belady {
            let spec = ReplaySpec(model: Self.model, hardware: tinyHardware(), policy: policy, budget: .experts(12))
            let whole = Metric.row(try Replayer.run(plan: plan, traceName: RoutingTrace.traceName(path), spec: spec))
            for chunk in [1, 5, 33, 1000] {
                let streamed = Metric.row(try Replayer.stream(path: path, spec: spec, chunkTokens: chunk))
                #expect(streamed == whole, "\(policy), chunks of \(chunk) tokens")
            }
        }
    }

    @Test func chunksEndBetweenSteps() throws {
        let trace = zipfTrace(seed: 5, layers: 2, experts: 8, topK: 2, tokens: 60, sequences: 3, prefill: 9)
        let path = temporaryDirectory() + "/t.jsonl"
        try trace.write(to: path)
        var chunks = try TraceChunks(path: path, tokens: 4)
        var tokens = 0, steps = 0, previous: Int32? = nil
        while let (chunk, previousSeq) = try chunks.next() {
            #expect(previousSeq == previous)
            let plan = StepPlan(chunk, previousSeq: previousSeq)
            tokens += chunk.tokenCount; steps += plan.steps
            #expect(chunk.tokenCount >= 4 || tokens == trace.tokenCount)
            previous = chunk.seq.last
        }
        #expect(tokens == trace.tokenCount && steps == StepPlan(trace).steps)
    }

    @Test func beladyAndBinaryTracesAreRefused() throws {
        let trace = zipfTrace(seed: 6, layers: 4, experts: 16, topK: 2, tokens: 20)
        let dir = temporaryDirectory()
        try trace.write(to: dir + "/t.jsonl")
        try trace.write(to: dir + "/t.moet")
        let belady = ReplaySpec(model: Self.model, hardware: tinyHardware(), policy: .belady, budget: .experts(12))
        #expect { _ = try Replayer.stream(path: dir + "/t.jsonl", spec: belady) } throws: { "\($0)".contains("belady") }
        var lru = belady
        lru.policy = .lru
        #expect { _ = try Replayer.stream(path: dir + "/t.moet", spec: lru) } throws: { "\($0)".contains("trace convert") }
    }
}
