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

    @Test func beladyIsRefused() throws {
        let trace = zipfTrace(seed: 6, layers: 4, experts: 16, topK: 2, tokens: 20)
        let dir = temporaryDirectory()
        try trace.write(to: dir + "/t.jsonl")
        let belady = ReplaySpec(model: Self.model, hardware: tinyHardware(), policy: .belady, budget: .experts(12))
        #expect { _ = try Replayer.stream(path: dir + "/t.jsonl", spec: belady) } throws: { "\($0)".contains("belady") }
    }

    /// A `.moet` trace streams a block of tokens at a time (issue 25, item 8): the same report as the whole trace, over
    /// several of the reader's blocks (4096 tokens).
    @Test func binaryTracesStreamWithTheWholeTraceReport() throws {
        let trace = zipfTrace(seed: 7, layers: 4, experts: 16, topK: 2, tokens: 9000, sequences: 5, prefill: 7)
        let path = temporaryDirectory() + "/t.moet"
        try trace.write(to: path)
        let plan = StepPlan(try RoutingTrace.load(path))
        for policy in [PolicyKind.lru, .pregated, .mixedPrecision, .cpuFallback] {
            let spec = ReplaySpec(model: Self.model, hardware: tinyHardware(), policy: policy, budget: .experts(12))
            let whole = Metric.row(try Replayer.run(plan: plan, traceName: "t", spec: spec))
            #expect(Metric.row(try Replayer.stream(path: path, spec: spec, chunkTokens: 1000)) == whole, "\(policy)")
        }
    }

    /// Block by block, the binary reader hands out the tokens the whole reader holds, and its errors name the file's
    /// token, not the block's.
    @Test func binaryBlocksAreTheWholeTrace() throws {
        let trace = zipfTrace(seed: 8, layers: 3, experts: 8, topK: 2, tokens: 100, sequences: 3, prefill: 5)
        let dir = temporaryDirectory()
        try trace.write(to: dir + "/t.moet")
        for block in [1, 7, 64, 1000] {
            let reader = try BinaryTraceReader(path: dir + "/t.moet", blockTokens: block)
            var read = RoutingTrace(header: trace.header, name: "t")
            var record = TokenRecord(layers: 3, topK: 2)
            while try reader.next(into: &record) { read.append(record) }
            #expect(read.seq == trace.seq && read.pos == trace.pos && read.phase == trace.phase, "blocks of \(block)")
            #expect(read.experts == trace.experts && read.weights == trace.weights, "blocks of \(block)")
        }
        // Token 60's first id, made out of range: the error names token 60 whatever the block.
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: dir + "/t.moet")))
        let columnsStart = bytes.count - 100 * 9 - 100 * 3 * 2 * 6
        let id = columnsStart + 100 * 9 + 60 * 3 * 2 * 2
        bytes[id] = 9; bytes[id + 1] = 0
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/bad.moet"))
        for block in [1, 7, 64, 1000] {
            let reader = try BinaryTraceReader(path: dir + "/bad.moet", blockTokens: block)
            var record = TokenRecord(layers: 3, topK: 2)
            #expect { while try reader.next(into: &record) {} } throws: {
                "\($0)".contains("bad.moet:62: field 'experts': token 60: layer 0: expert id 9 out of range")
            }
        }
    }

    /// A `.moet` of more routed ids than a whole trace holds (2^31) is refused whole, with the way out, and read by
    /// the streaming reader, which has no such limit. The file is sparse: only the first block's positions are written,
    /// so the reader reads that block and stops at the next token, whose position does not follow.
    @Test func aBinaryTraceAboveTwoToThe31RoutedIDsStreams() throws {
        let layers = 1024, tokens = (1 << 21) + 1  // 2^31 + 1024 routed ids, top-1 of one expert (id 0 everywhere)
        let json = Array(#"{"format":"moe-routing-trace","version":1,"model":"big","layers":1024,"experts":1,"top_k":1}"#.utf8)
        var head = BinaryTrace.magic
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { head.append(contentsOf: $0) } }
        u32(1); u32(layers); u32(1); u32(1); u32(0)
        withUnsafeBytes(of: UInt64(tokens).littleEndian) { head.append(contentsOf: $0) }
        u32(json.count); head.append(contentsOf: json)
        let path = temporaryDirectory() + "/big.moet"
        #expect(FileManager.default.createFile(atPath: path, contents: Data(head)))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        let positions = (0..<4096).map { Int32($0).littleEndian }
        try handle.seek(toOffset: UInt64(head.count + 4 * tokens))
        try handle.write(contentsOf: positions.withUnsafeBytes { Data($0) })
        try handle.truncate(atOffset: UInt64(head.count + 9 * tokens + 2 * tokens * layers))
        try handle.close()
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect { _ = try RoutingTrace.load(path) } throws: { "\($0)".contains("2147484672 routed ids") && "\($0)".contains("--stream") }
        #expect { _ = try RoutingTrace.check(path) } throws: {
            "\($0)".contains("big.moet:4098: field 'pos': token 4096: position 0 does not follow 4095")
        }
    }

    /// `trace convert` and `trace gen` write `.moet` in blocks (two passes: count, then write): byte for byte what the
    /// whole writer writes, across the converter's blocks of 65,536 tokens; `trace gen --out X.moet` is binary.
    @Test func binaryTracesAreWrittenBlockByBlock() throws {
        let dir = temporaryDirectory()
        let trace = zipfTrace(seed: 9, layers: 2, experts: 8, topK: 2, tokens: 70_000, sequences: 6, prefill: 3)
        try trace.write(to: dir + "/t.jsonl")
        let reread = try RoutingTrace.load(dir + "/t.jsonl")  // weights as the file has them
        try BinaryTrace.write(reread, to: dir + "/whole.moet")
        let converted = try RoutingTrace.convert(dir + "/t.jsonl", to: dir + "/blocks.moet")
        #expect(converted.tokens == 70_000)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/blocks.moet")) == (try Data(contentsOf: URL(fileURLWithPath: dir + "/whole.moet"))))
        _ = try RoutingTrace.convert(dir + "/blocks.moet", to: dir + "/back.jsonl")
        func tokenLines(_ path: String) throws -> [Substring] { try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").dropFirst().map { $0 } }
        #expect(try tokenLines(dir + "/back.jsonl") == (try tokenLines(dir + "/t.jsonl")))

        let cli = CLITests()
        let gen = try cli.moesim(["trace", "gen", "--model", "mixtral-8x7b", "--tokens", "300", "--out", dir + "/g.moet"])
        let text = try cli.moesim(["trace", "gen", "--model", "mixtral-8x7b", "--tokens", "300", "--out", dir + "/g.jsonl"])
        #expect(gen.status == 0 && text.status == 0, "\(gen.stderr)")
        #expect(try RoutingTrace.load(dir + "/g.moet").tokenCount == 300)
        _ = try RoutingTrace.convert(dir + "/g.moet", to: dir + "/g2.jsonl")
        #expect(try tokenLines(dir + "/g2.jsonl") == (try tokenLines(dir + "/g.jsonl")))
    }
}
