import Foundation
import Testing
@testable import MoESim

@Suite struct TraceFormatTests {
    static let header = #"{"format":"moe-routing-trace","version":1,"model":"t","layers":2,"experts":4,"top_k":2}"#

    /// Loads a trace made of the header and `lines`, expecting an error whose text contains every fragment.
    func expectError(_ lines: [String], header: String = TraceFormatTests.header, name: String = "bad.jsonl",
                     _ fragments: String...) {
        let path = writeTemporary(([header] + lines).joined(separator: "\n") + "\n", name: name)
        do {
            _ = try RoutingTrace.load(path)
            Issue.record("expected an error containing \(fragments)")
        } catch {
            let text = "\(error)"
            for f in fragments { #expect(text.contains(f), "'\(text)' lacks '\(f)'") }
            #expect(text.hasPrefix(path), "the message names the file: \(text)")
        }
    }

    @Test func badInputsAreNamedByLineAndField() {
        let ok = #"{"seq":0,"pos":0,"phase":"decode","experts":[[0,1],[2,3]]}"#
        expectError([ok, #"{"seq":0,"pos":1,"phase":"decode","experts":[[0,1]]}"#], ":3:", "'experts'", "1 layers, expected 2")
        expectError([#"{"seq":0,"pos":0,"phase":"decode","experts":[[0,4],[2,3]]}"#], ":2:", "expert id 4 out of range 0..<4")
        expectError([#"{"seq":0,"pos":0,"phase":"decode","experts":[[1,1],[2,3]]}"#], ":2:", "duplicate expert id 1")
        expectError([#"{"seq":0,"pos":0,"phase":"decode","experts":[[0,1],[2,3]],"weights":[[0.5],[0.5,0.5]]}"#],
                    ":2:", "'weights'", "1 weights do not match the 2 expert ids")
        expectError([#"{"seq":0,"pos":0,"phase":"decode","experts":[[0,1],null],"weights":[[0.5,0.5],[0.5,0.5]]}"#],
                    "'weights'", "null exactly where experts are null")
        expectError([#"{"seq":0,"pos":0,"phase":"generate","experts":[[0,1],[2,3]]}"#], ":2:", "'phase'", "unknown phase \"generate\"")
        expectError([#"{"seq":0,"pos":0,"phase":"decode"}"#], ":2:", "'experts'", "missing")
        expectError([#"{"seq":0,"pos":0,"phase":"decode","experts":[[0,1],[2,3,1]]}"#], "more than top_k = 2 ids")
        expectError([#"{"seq":0,"pos":0,"phase":"decode","experts":[[0,1],[2,3]]"#], ":2:", "expected '}'")
        expectError([ok, #"{"seq":0,"pos":0,"phase":"decode","experts":[[0,1],[2,3]]}"#], ":3:", "'pos'", "does not follow")
        expectError([ok, #"{"seq":1,"pos":0,"phase":"decode","experts":[[0,1],[2,3]]}"#,
                     #"{"seq":0,"pos":5,"phase":"decode","experts":[[0,1],[2,3]]}"#], ":4:", "'seq'", "contiguous")
        expectError([ok, #"{"seq":0,"pos":1,"phase":"prefill","experts":[[0,1],[2,3]]}"#], ":3:", "prefill token after decode")
        expectError([#"{"seq":0,"pos":0,"phase":"decode","experts":[[0,-1],[2,3]]}"#], "expert id -1 out of range")
        expectError([#"{"seq":0,"pos":0,"phase":"decode","experts":[[0,1.5],[2,3]]}"#], "expected an integer")
    }

    @Test func badHeadersAreRefused() {
        expectError([], header: #"{"format":"something-else","version":1}"#, ":1:", "'format'")
        expectError([], header: #"{"format":"moe-routing-trace","version":2,"layers":2,"experts":4,"top_k":2}"#, ":1:", "'version'", "expected 1")
        expectError([], header: #"{"format":"moe-routing-trace","version":1,"layers":2,"experts":4}"#, ":1:", "'top_k'", "missing")
        expectError([], header: #"{"format":"moe-routing-trace","version":1,"layers":2,"experts":4,"top_k":5}"#, "'top_k'", "exceeds experts")
        expectError([], header: "not json", ":1:", "not a JSON object")
    }

    @Test func anEmptyFileAndAMissingFileAreErrors() {
        let empty = writeTemporary("", name: "empty.jsonl")
        #expect(throws: TraceError.empty(path: empty)) { try RoutingTrace.load(empty) }
        #expect { try RoutingTrace.load("/nonexistent/trace.jsonl") } throws: { "\($0)".contains("cannot open") }
    }

    @Test func aTruncatedGzipIsReported() throws {
        let dir = temporaryDirectory()
        let whole = dir + "/whole.jsonl.gz"
        try SyntheticTraceGenerator(model: tinyModel(), spec: SyntheticTraceSpec(tokens: 400)).write(to: whole)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: whole))
        let cut = dir + "/cut.jsonl.gz"
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: cut))
        #expect(throws: TraceError.truncatedGzip(path: cut)) { try RoutingTrace.load(cut) }
        let garbage = dir + "/garbage.jsonl.gz"
        try Data(bytes.prefix(20) + Data(repeating: 0xAB, count: 200)).write(to: URL(fileURLWithPath: garbage))
        #expect { try RoutingTrace.load(garbage) } throws: { "\($0)".contains("corrupt gzip") }
    }

    /// Inflating on a second thread hands out the same bytes as inflating in line, over several of its chunks, to
    /// readers asking for any amount; a file cut short or damaged fails with the same error after the same bytes.
    @Test func backgroundInflationGivesTheSameBytesAndErrors() throws {
        let dir = temporaryDirectory()
        let whole = dir + "/whole.jsonl.gz"
        try SyntheticTraceGenerator(model: tinyModel(layers: 4, experts: 16, topK: 4),
                                    spec: SyntheticTraceSpec(tokens: 40_000)).write(to: whole)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: whole))
        let cut = dir + "/cut.jsonl.gz", damaged = dir + "/damaged.jsonl.gz"
        try bytes.prefix(bytes.count * 3 / 4).write(to: URL(fileURLWithPath: cut))
        var broken = bytes
        for i in stride(from: bytes.count / 2, to: bytes.count / 2 + 64, by: 1) { broken[i] ^= 0x5A }
        try broken.write(to: URL(fileURLWithPath: damaged))
        /// Everything `source` hands out in reads of `size` bytes, and the error that ended it.
        func drain(_ source: ByteSource, _ size: Int) -> (Data, String?) {
            var out = Data()
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 1)
            defer { buffer.deallocate() }
            do {
                while true {
                    let n = try source.read(into: buffer)
                    if n == 0 { return (out, nil) }
                    out.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[..<n]))
                }
            } catch { return (out, "\(error)") }
        }
        func open(_ path: String) throws -> GzipFileSource { try GzipFileSource(file: fopen(path, "rb")!, path: path) }
        for path in [whole, cut, damaged] {
            let direct = drain(try open(path), 1 << 16)
            #expect(direct.0.count > 2 << 20 || path != whole, "spans several chunks")
            for size in [7, 1 << 16, 3 << 20] {
                let threaded = drain(BackgroundSource(try open(path))!, size)
                #expect(threaded.1 == direct.1, "\(path), reads of \(size)")
                #expect(threaded.0 == direct.0.prefix(threaded.0.count) && threaded.0.count >= direct.0.count - (1 << 20),
                        "\(path), reads of \(size): \(threaded.0.count) of \(direct.0.count) bytes")
            }
        }
        #expect(drain(BackgroundSource(try open(cut))!, 1 << 16).1 == "\(TraceError.truncatedGzip(path: cut))")
        // A reader that stops early leaves the worker to finish on its own.
        let early = BackgroundSource(try open(whole))!
        #expect(try early.read(into: UnsafeMutableRawBufferPointer.allocate(byteCount: 10, alignment: 1)) == 10)
    }

    /// A compressed file of many chunks, compressed on a second thread, inflates to every byte written, in order,
    /// whatever the sizes of the writes; a sink dropped before its commit leaves no file; a write that fails on the
    /// compressing thread comes back from the sink.
    @Test func compressingOnASecondThreadKeepsEveryByte() throws {
        let dir = temporaryDirectory()
        var rng = SplitMix64(seed: 5)
        var text = ""
        while text.utf8.count < 3 << 20 {  // about 12 of the sink's chunks
            text += (0..<(1 + rng.nextInt(below: 40))).map { _ in String(rng.nextInt(below: 100_000)) }.joined(separator: ",") + "\n"
        }
        let utf8 = Array(text.utf8)
        for (name, pieces) in [("one.txt.gz", 1), ("many.txt.gz", 997)] {
            let sink = try AtomicFileSink(path: dir + "/" + name)
            var start = 0
            for p in 0..<pieces {
                let end = p == pieces - 1 ? utf8.count : min(utf8.count, start + rng.nextInt(below: 2 * utf8.count / pieces + 1))
                try sink.write(bytes: Array(utf8[start..<end]))
                start = end
            }
            try sink.commit()
            let source = try GzipFileSource(file: fopen(dir + "/" + name, "rb")!, path: name)
            var back = [UInt8](), buffer = [UInt8](repeating: 0, count: 1 << 16)
            while case let n = try buffer.withUnsafeMutableBytes({ try source.read(into: $0) }), n > 0 { back += buffer[..<n] }
            let same = back == utf8  // a Bool: a failed comparison of megabytes would be diffed element by element
            #expect(same, "\(name): \(back.count) of \(utf8.count) bytes")
        }
        do {  // dropped while its compressor runs: nothing is left behind, and nothing hangs
            let sink = try AtomicFileSink(path: dir + "/dropped.txt.gz")
            try sink.write(bytes: utf8)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["many.txt.gz", "one.txt.gz"])
        // A file that cannot take the bytes: the failure on the compressing thread reaches a write or the commit.
        try FileManager.default.createSymbolicLink(atPath: dir + "/full.txt.gz", withDestinationPath: "/dev/full")
        #expect(throws: ConfigError.self) {
            let sink = try AtomicFileSink(path: dir + "/full.txt.gz")
            for _ in 0..<4 { try sink.write(bytes: utf8) }
            try sink.commit()
        }
    }

    @Test(arguments: ["t.jsonl", "t.jsonl.gz"])
    func writeThenReadGivesTheSameTrace(name: String) throws {
        let model = tinyModel(layers: 3, experts: 16, topK: 4)
        let generator = try SyntheticTraceGenerator(model: model, spec: SyntheticTraceSpec(tokens: 300, seed: 9))
        let path = temporaryDirectory() + "/" + name
        try generator.write(to: path)
        let read = try RoutingTrace.load(path)
        let made = generator.makeTrace()
        #expect(read.experts == made.experts)
        #expect(read.seq == made.seq && read.pos == made.pos && read.phase == made.phase)
        #expect(zip(read.weights, made.weights).allSatisfy { abs($0 - $1) <= 6e-6 })  // 5 decimals plus float rounding
        #expect(read.header.layers == 3 && read.tokenCount == 300)
        // Rewriting what was read gives the same token lines (the writer is byte-stable; the header keeps
        // model, shape, source and notes, not the generator settings).
        let again = temporaryDirectory() + "/" + name
        let writer = try TraceWriter(path: again, header: read.header)
        let reader = try TraceReader(path: path)
        var record = TokenRecord(layers: 3, topK: 4)
        while try reader.next(into: &record) { try writer.append(record) }
        try writer.finish()
        if !name.hasSuffix(".gz") {
            let original = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").dropFirst()
            let copy = try String(contentsOfFile: again, encoding: .utf8).split(separator: "\n").dropFirst()
            #expect(original == copy)
        }
        #expect(try RoutingTrace.load(again).experts == read.experts)
    }

    @Test func generatedTracesAreDeterministicPerSeed() throws {
        let model = tinyModel(layers: 4, experts: 32, topK: 4)
        let a = try SyntheticTraceGenerator(model: model, spec: SyntheticTraceSpec(tokens: 200, seed: 5)).makeTrace()
        let b = try SyntheticTraceGenerator(model: model, spec: SyntheticTraceSpec(tokens: 200, seed: 5)).makeTrace()
        let c = try SyntheticTraceGenerator(model: model, spec: SyntheticTraceSpec(tokens: 200, seed: 6)).makeTrace()
        #expect(a.experts == b.experts && a.weights == b.weights)
        #expect(a.experts != c.experts)
    }

    @Test func nullCellsAreSkippedAndCounted() throws {
        let path = writeTemporary([Self.header,
            #"{"seq":0,"pos":0,"phase":"prefill","experts":[[0,1],null]}"#,
            #"{"seq":0,"pos":1,"phase":"prefill","experts":[null,[1,2]]}"#,
            #"{"seq":0,"pos":2,"phase":"decode","experts":[null,null],"extra":{"ignored":[1,2]}}"#].joined(separator: "\n"))
        let trace = try RoutingTrace.load(path)
        #expect(trace.missingCells == 4)
        let plan = StepPlan(trace)
        #expect(plan.steps == 2)                    // the two prefill tokens form one step
        #expect(plan.accesses == 4)                 // {0,1} at layer 0 and {1,2} at layer 1; the decode step has none
        #expect(plan.missingCells == 4)
    }

    @Test func prefillTokensFormOneStepWithTokenCounts() throws {
        let trace = makeTrace([[[0, 1]], [[1, 2]], [[1, 3]], [[0, 1]]], experts: 4, topK: 2,
                              phases: [.prefill, .prefill, .prefill, .decode])
        let plan = StepPlan(trace)
        #expect(plan.steps == 2)
        #expect(Array(plan.accessExpert[plan.accessRange(step: 0, layer: 0)]) == [0, 1, 2, 3])
        #expect(Array(plan.accessTokens[plan.accessRange(step: 0, layer: 0)]) == [1, 3, 1, 1])
        #expect(plan.stepTokens == [3, 1])
    }

    @Test(.needsRealTraces) func realTracesLoadWithTheirDocumentedShape() throws {
        let folder = try #require(realTracesFolder)
        let p0 = try RoutingTrace.load(folder + "/mixtral8x7b_humaneval_p0_prefill_decode.jsonl")
        #expect(p0.tokenCount == 218 && p0.missingCells == 199 && p0.hasWeights)
        #expect(p0.phase.filter { $0 == .prefill }.count == 135)
        let decode = try RoutingTrace.load(folder + "/mixtral8x7b_humaneval_gsm8k_decode_approx.jsonl")
        #expect(decode.tokenCount == 585 && decode.missingCells == 52)
        #expect(Set(decode.seq).count == 4)
    }
}

@Suite struct BinaryTraceTests {
    static func sample() throws -> RoutingTrace {
        try SyntheticTraceGenerator(model: tinyModel(layers: 3, experts: 16, topK: 4), spec: SyntheticTraceSpec(tokens: 200, seed: 3))
            .makeTrace(name: "t")
    }

    @Test func binaryRoundTripsEveryColumn() throws {
        let original = try Self.sample()
        let path = temporaryDirectory() + "/t.moet"
        try original.write(to: path)
        let read = try RoutingTrace.load(path)
        #expect(read.experts == original.experts && read.weights == original.weights)
        #expect(read.seq == original.seq && read.pos == original.pos && read.phase == original.phase)
        #expect(read.header.layers == 3 && read.header.topK == 4 && read.header.model == original.header.model)
        #expect(read.missingCells == original.missingCells)
        // Through JSON and back: the same routing; a second trip gives the same bytes (weights are rounded once).
        let dir = temporaryDirectory()
        try read.write(to: dir + "/1.jsonl")
        try RoutingTrace.load(dir + "/1.jsonl").write(to: dir + "/2.moet")
        try RoutingTrace.load(dir + "/2.moet").write(to: dir + "/3.jsonl")
        try RoutingTrace.load(dir + "/3.jsonl").write(to: dir + "/4.moet")
        #expect(try RoutingTrace.load(dir + "/2.moet").experts == original.experts)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/2.moet")) == Data(contentsOf: URL(fileURLWithPath: dir + "/4.moet")))
    }

    @Test func nullCellsSurviveTheBinaryFormat() throws {
        let trace = makeTrace([[[0, 1], nil], [nil, [2, 3]]], experts: 4, topK: 2)
        let path = temporaryDirectory() + "/n.moet"
        try trace.write(to: path)
        let read = try RoutingTrace.load(path)
        #expect(read.missingCells == 2 && read.expertIDs(token: 0, layer: 1) == nil)
    }

    @Test func badBinaryFilesAreNamed() throws {
        let path = temporaryDirectory() + "/t.moet"
        try Self.sample().write(to: path)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        func expectError(_ data: Data, _ fragment: String) throws {
            let p = temporaryDirectory() + "/bad.moet"
            try data.write(to: URL(fileURLWithPath: p))
            #expect { try RoutingTrace.load(p) } throws: { "\($0)".hasPrefix(p) && "\($0)".contains(fragment) }
        }
        try expectError(Data("NOTATRACE".utf8) + bytes.dropFirst(9), "bad magic")
        try expectError(bytes.prefix(bytes.count - 10), "truncated")
        try expectError(bytes + Data([1, 2, 3]), "but its header describes")
        // The first expert id of token 0 sits after the header, seq, pos and phase columns.
        let jsonCount = Int(bytes[36]) | Int(bytes[37]) << 8
        let firstID = 40 + jsonCount + 200 * 9
        var corrupt = bytes
        corrupt[firstID] = 99
        try expectError(corrupt, "expert id 99 out of range 0..<16")
    }

    @Test func recordedPredictionsAreRefusedByTheBinaryWriter() throws {
        let path = writeTemporary("""
            {"format":"moe-routing-trace","version":1,"model":"t","layers":1,"experts":4,"top_k":1}
            {"seq":0,"pos":0,"phase":"decode","experts":[[0]],"pred":[[1]]}
            """)
        let trace = try RoutingTrace.load(path)
        #expect { try trace.write(to: temporaryDirectory() + "/p.moet") } throws: { "\($0)".contains("does not hold recorded predictions") }
    }
}
