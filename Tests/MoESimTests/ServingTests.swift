import Foundation
import Testing
@testable import MoESim

/// Batched serving: the schedulers' rules as properties over seeds, a hand-worked batched step, the batch-1 identity
/// with sequential replay, and the union-size law of uniform routing.
@Suite struct ServingTests {
    /// Drives a scheduler with a stand-in engine: each step takes `stepNanoseconds`, after waiting for `notBefore`.
    func drive(_ scheduler: ServingScheduler, stepNanoseconds: Int64 = 1_000) throws -> [(run: StepRun, start: Int64)] {
        var now: Int64 = 0, runs: [(StepRun, Int64)] = []
        while let run = try scheduler.next(at: now) {
            let start = max(now, run.notBefore)
            runs.append((run, start))
            now = start + stepNanoseconds
        }
        return runs
    }

    /// Sequences with random prompt and output lengths (some without a prompt), each a request.
    func requestTrace(seed: UInt64, requests: Int, layers: Int = 2, experts: Int = 8, topK: Int = 2) -> RoutingTrace {
        var rng = SplitMix64(seed: seed)
        var cells: [[[Int]?]] = [], phases: [Phase] = [], seqs: [Int] = []
        for r in 0..<requests {
            let prompt = rng.nextInt(below: 3) == 0 ? 0 : 1 + rng.nextInt(below: 9), output = 1 + rng.nextInt(below: 6)
            for t in 0..<(prompt + output) {
                cells.append((0..<layers).map { _ in Array((0..<experts).shuffled(using: &rng).prefix(topK)) })
                phases.append(t < prompt ? .prefill : .decode)
                seqs.append(r)
            }
        }
        return makeTrace(cells, experts: experts, topK: topK, phases: phases, seqs: seqs)
    }

    func randomOptions(_ rng: inout SplitMix64) -> ServingOptions {
        var o = ServingOptions()
        o.scheduler = rng.nextInt(below: 2) == 0 ? .static : .continuous
        o.batch = 1 + rng.nextInt(below: 5)
        o.maxSeqs = 1 + rng.nextInt(below: 5)
        o.maxTokens = o.maxSeqs + rng.nextInt(below: 8)
        o.prefillChunk = 1 + rng.nextInt(below: 6)
        switch rng.nextInt(below: 3) {
        case 0: o.arrivals = .allAtOnce
        case 1: o.arrivals = .poisson(rate: 1e5 * (0.2 + rng.nextDouble()), seed: rng.next())
        default: o.arrivals = .closedLoop(users: 1 + rng.nextInt(below: 4), thinkSeconds: 1e-6 * Double(rng.nextInt(below: 3000)))
        }
        return o
    }

    @Test func everyTokenOnceInOrderNoneBeforeItsArrivalAndBatchesWithinTheirLimits() throws {
        for seed in propertySeeds(60, from: 0) {
            var rng = SplitMix64(seed: seed &* 7919)
            let trace = requestTrace(seed: seed, requests: 1 + rng.nextInt(below: 12)), options = randomOptions(&rng)
            let scheduler = try ServingScheduler(trace: trace, options: options)
            let runs = try drive(scheduler)
            let requests = try ServingRequest.all(in: trace)
            var next = requests.map(\.firstToken)  // the next token each request must process
            for (i, step) in scheduler.steps.enumerated() {
                let what = "seed \(seed) step \(i) \(options.scheduler)"
                #expect(Set(step.members).count == step.members.count, "\(what): a request twice in one step")
                for (r, part) in zip(step.members, step.parts) {
                    #expect(part.lowerBound == next[r], "\(what): request \(r) out of order")
                    #expect(part.upperBound <= requests[r].firstToken + requests[r].tokenCount, "\(what): past its end")
                    next[r] = part.upperBound
                    #expect(runs[i].start >= scheduler.log.arrival[r] && scheduler.log.arrival[r] >= 0, "\(what): before arrival")
                }
                switch options.scheduler {
                case .continuous:
                    #expect(step.members.count <= options.maxSeqs, "\(what): over max_seqs")
                    #expect(step.parts.reduce(0) { $0 + $1.count } <= options.maxTokens, "\(what): over max_tokens")
                    #expect(step.parts.allSatisfy { $0.count == 1 || $0.count <= options.prefillChunk }, "\(what): chunk too large")
                case .static: #expect(step.members.count <= options.batch, "\(what): over the batch")
                case .sequential: #expect(step.members.count == 1)
                }
            }
            #expect(zip(next, requests).allSatisfy { $0 == $1.firstToken + $1.tokenCount }, "seed \(seed): a token never processed")
            let log = scheduler.log
            for r in 0..<requests.count {
                #expect(log.arrival[r] <= log.start[r] && log.start[r] < log.firstToken[r] && log.firstToken[r] <= log.finish[r],
                        "seed \(seed) request \(r): \(log.arrival[r]) \(log.start[r]) \(log.firstToken[r]) \(log.finish[r])")
            }
        }
    }

    @Test func aStaticBatchRunsToCompletionBeforeTheNextIsAdmitted() throws {
        var options = ServingOptions()
        options.scheduler = .static
        options.batch = 2
        let trace = requestTrace(seed: 3, requests: 5)
        let scheduler = try ServingScheduler(trace: trace, options: options)
        _ = try drive(scheduler)
        var batches: [Set<Int>] = [], current = Set<Int>()
        for step in scheduler.steps {
            if !current.isEmpty && !Set(step.members).isSubset(of: current) { batches.append(current); current = [] }
            current.formUnion(step.members)
        }
        batches.append(current)
        #expect(batches == [[0, 1], [2, 3], [4]])
    }

    /// Request A (seq 0) has two decode tokens, B (seq 1) one; static batch 2, all at once, LRU with room for all.
    /// 2 µs non-expert compute, 3 µs an expert (for one or two tokens), 201 µs a copy.
    @Test func aHandWorkedBatchOfTwo() throws {
        let trace = makeTrace([[[0], [1]], [[0], [2]], [[0], [3]]], experts: 4, topK: 1, seqs: [0, 0, 1])
        var spec = ReplaySpec(model: tinyModel(layers: 2, experts: 4, topK: 1), hardware: tinyHardware(), policy: .lru,
                              budget: .experts(8))
        spec.serving.scheduler = .static
        spec.serving.batch = 2
        spec.serving.slo = ServiceLevel(ttftSeconds: 700e-6, tpotSeconds: 200e-6)
        var events = EventLog()
        let (r, log) = try Replayer.serve(trace: trace, plan: StepPlan(trace), spec: spec, sink: &events)
        // Step 1 (A's first token, B's only one): layer 0 gate at 2 µs, expert 0 (two tokens) copied 2 -> 203,
        // computed to 206; layer 1 gate at 208, experts 1 and 3 copied 208 -> 409 -> 610, computed 409 -> 412
        // and 610 -> 613. Step 2 (A's second): expert 0 hits at 615 -> 618; expert 2 copied 620 -> 821, done 824.
        #expect(r.counters.simNanoseconds == 824_000)
        #expect((r.counters.accesses, r.counters.hits, r.counters.misses, r.steps) == (5, 1, 4, 2))
        #expect(events.drain().filter { if case .computeEnd = $0.event { true } else { false } }.map(\.time.nanoseconds)
                == [206_000, 412_000, 613_000, 618_000, 824_000])
        #expect(log.firstToken == [613_000, 613_000] && log.finish == [824_000, 613_000] && log.start == [0, 0])
        #expect(log.tpot(0) == 211e-6 && log.tpot(1) == nil)
        let s = try #require(r.serving)
        #expect(s.meanBatch == 1.5 && r.distinctExpertsPerLayer == 1.25)
        func near(_ a: Double?, _ b: Double) -> Bool { a.map { abs($0 - b) <= 1e-12 * b } ?? false }
        #expect(near(s.requestsPerSecond, 2 / 824e-6) && near(s.outputTokensPerSecond, 3 / 824e-6))
        // A misses the TPOT target (211 > 200 µs), B meets both.
        #expect(near(s.goodput, 1 / 824e-6))
    }

    /// Three one-token requests (no prompt), static batch 2, all at once; 2 layers × 4 experts, top-1, LRU with room
    /// for all. Step 1 serves requests 0 and 1: layer 0's expert 0 copied 2 → 203 µs, computed to 206; layer 1's
    /// experts 1 and 2 copied 208 → 409 → 610, computed to 412 and 613. Step 2 serves request 2: expert 0 hits (615 →
    /// 618), expert 3 copied 620 → 821, computed to 824: 211 µs. `ttft_s` is a mean over sequences, each its first
    /// step's latency: (613 + 613 + 211) / 3 = 479 µs (a mean over steps gave 412).
    @Test func stepTimeToFirstTokenIsAMeanOverSequences() throws {
        let trace = makeTrace([[[0], [1]], [[0], [2]], [[0], [3]]], experts: 4, topK: 1, seqs: [0, 1, 2])
        var spec = ReplaySpec(model: tinyModel(layers: 2, experts: 4, topK: 1), hardware: tinyHardware(), policy: .lru,
                              budget: .experts(8))
        spec.serving.scheduler = .static
        spec.serving.batch = 2
        let (r, log) = try Replayer.serve(trace: trace, plan: StepPlan(trace), spec: spec)
        #expect(log.firstToken == [613_000, 613_000, 824_000])
        #expect(r.counters.firstStepLatencies == [613_000, 613_000, 211_000])
        #expect(abs(r.ttftSeconds! - 479e-6) < 1e-15 && r.tpotMeanSeconds == nil)
    }

    /// Continuous batching with prompt chunks of one token: A (seq 0) has three output tokens and no prompt; B (seq
    /// 1) a two-token prompt, whose second token is routed to expert 1, then one output token; everything else goes
    /// to expert 0. Step 1 (A's first token, B's first chunk): both layers copy their expert: 2 + 201 + 3 + 2 + 201 +
    /// 3 = 412 µs. Step 2 (A's second token with B's second chunk): layer 0 waits for expert 1 (414 → 615, computed
    /// to 618), layer 1 hits: 211 µs. Step 3 (A's third token, B's output token): hits only, 10 µs. `tpot_*` takes
    /// every output token after its sequence's first at its step's latency: 211 (A's second, beside a prompt chunk),
    /// 10 and 10 µs (the step holding a prompt token used to be left out: 10 µs alone).
    @Test func timePerOutputTokenCountsOutputTokensBesidePromptChunks() throws {
        let trace = makeTrace([[[0], [0]], [[0], [0]], [[0], [0]], [[0], [0]], [[1], [0]], [[0], [0]]], experts: 4, topK: 1,
                              phases: [.decode, .decode, .decode, .prefill, .prefill, .decode], seqs: [0, 0, 0, 1, 1, 1])
        var spec = ReplaySpec(model: tinyModel(layers: 2, experts: 4, topK: 1), hardware: tinyHardware(), policy: .lru,
                              budget: .experts(8))
        spec.serving.scheduler = .continuous
        spec.serving.maxSeqs = 2
        spec.serving.prefillChunk = 1
        let (r, log) = try Replayer.serve(trace: trace, plan: StepPlan(trace), spec: spec)
        #expect(log.firstToken == [412_000, 623_000] && log.finish == [633_000, 633_000])
        #expect(r.counters.firstStepLatencies == [412_000, 412_000])
        #expect(r.counters.decodeStepLatencies == [211_000, 10_000, 10_000])
        #expect(abs(r.tpotMeanSeconds! - 77e-6) < 1e-15 && r.tpotP50Seconds == 10_000e-9 && r.tpotP99Seconds == 211_000e-9)
    }

    /// A request equal to its SLO meets it: times and targets are compared in whole nanoseconds (0.3 s as a double
    /// times 1e-9 reads 300,000,000 ns back exactly; 300,000,000 ns times 1e-9 is 0.30000000000000004 s).
    @Test func aTimeEqualToItsTargetMeetsIt() {
        var log = ServingLog([ServingRequest(seq: 0, firstToken: 0, promptTokens: 0, outputTokens: 3, kvTokens: 3)])
        log.arrival = [0]; log.start = [0]; log.firstToken = [300_000_000]; log.finish = [500_000_000]
        #expect(log.meets(0, ServiceLevel(ttftSeconds: 0.3, tpotSeconds: 0.1)), "TTFT 0.3 s and TPOT 0.1 s exactly")
        #expect(!log.meets(0, ServiceLevel(ttftSeconds: 0.299_999_999, tpotSeconds: 0.1)), "1 ns over its TTFT target")
        #expect(!log.meets(0, ServiceLevel(ttftSeconds: 0.3, tpotSeconds: 0.099_999_999)), "2 ns over its TPOT budget")
    }

    /// `static` with batch 1 forms exactly the sequential steps: every column the two share is equal, for every
    /// strategy (the oracles replay the first pass's order, which is the trace's here).
    @Test func staticBatchOneEqualsSequentialForEveryStrategy() throws {
        let serving = Set(Metric.allCases.drop { $0 != .scheduler }.map(\.rawValue))
        for seed in propertySeeds(3, from: 0) {
            let trace = zipfTrace(seed: seed, layers: 4, experts: 8, topK: 2, tokens: 60, sequences: 3)
            for policy in PolicyKind.allCases {
                var spec = ReplaySpec(model: tinyModel(layers: 4, experts: 8, topK: 2), hardware: tinyHardware(),
                                      policy: policy, budget: .experts(10))
                let sequential = Metric.row(try Replayer.run(plan: StepPlan(trace), traceName: trace.name, spec: spec))
                spec.serving.scheduler = .static
                var none = NoEvents()
                let batched = Metric.row(try Replayer.serve(trace: trace, plan: StepPlan(trace), spec: spec, sink: &none).result)
                for (column, (a, b)) in zip(Metric.header, zip(sequential, batched)) where !serving.contains(column) {
                    #expect(a == b, "seed \(seed) \(policy): \(column) \(a) != \(b)")
                }
            }
        }
    }

    /// A served run counts what it needs of the sequential plan (`SequentialFacts`) instead of building it: the
    /// counts equal the plan's, and every column and request row equals the run given the built plan, for every
    /// strategy, random serving options and one or two GPUs (which build the plan when asked).
    @Test func servedRunsGiveTheSameAnswerWithoutTheSequentialPlan() throws {
        for seed in propertySeeds(4) {
            let trace = zipfTrace(seed: seed, layers: 3, experts: 8, topK: 2, tokens: 80, sequences: 5, prefill: Int(seed % 3) * 3)
            let plan = StepPlan(trace)
            let counted = SequentialFacts(trace), built = TraceTotals(plan)
            #expect(counted.extent == PlanExtent(plan), "seed \(seed)")
            #expect(counted.uses == Replayer.expertUses(plan))
            #expect(counted.totals.tokens == built.tokens)
            #expect(counted.totals.steps == built.steps)
            #expect(counted.totals.missingCells == built.missingCells)
            #expect(counted.totals.weight == built.weight)
            #expect(counted.totals.weighted == built.weighted)
            var rng = SplitMix64(seed: seed)
            for policy in PolicyKind.allCases {
                for gpus in [1, 2] {
                    var hardware = tinyHardware()
                    hardware.gpus = gpus
                    hardware.interconnectBytesPerSecond = 100e9
                    var spec = ReplaySpec(model: tinyModel(layers: 3, experts: 8, topK: 2), hardware: hardware,
                                          policy: policy, budget: .experts(8))
                    spec.serving = randomOptions(&rng)
                    let given: (result: ReplayResult, log: ServingLog)
                    do { given = try Replayer.serve(trace: trace, plan: plan, spec: spec) } catch {
                        #expect(throws: (any Error).self, "seed \(seed) \(policy) on \(gpus) GPUs: refused alike") {
                            _ = try Replayer.serve(trace: trace, spec: spec)
                        }
                        continue
                    }
                    let counting = try Replayer.serve(trace: trace, spec: spec)
                    #expect(Metric.row(counting.result) == Metric.row(given.result), "seed \(seed) \(policy) on \(gpus) GPUs")
                    #expect(counting.log.rows(slo: nil) == given.log.rows(slo: nil))
                }
            }
        }
    }

    /// Uniform routing: a token picks each expert with probability k/E, so B tokens' union holds E(1 - (1 - k/E)^B)
    /// experts on average. 64 experts, top-4, 4096 decode tokens per batch size; within 2% (the sampling error of
    /// the mean at B = 64, the widest, is about 0.3%).
    @Test func distinctExpertsOfUniformRoutingFollowTheUnionLaw() throws {
        let E = 64, k = 4, layers = 2
        for B in [1, 4, 16, 64] {
            var rng = SplitMix64(seed: UInt64(B))
            let requests = 4096 / 8, perRequest = 8
            var cells: [[[Int]?]] = [], seqs: [Int] = []
            for r in 0..<requests {
                for _ in 0..<perRequest {
                    cells.append((0..<layers).map { _ in Array((0..<E).shuffled(using: &rng).prefix(k)) })
                    seqs.append(r)
                }
            }
            let trace = makeTrace(cells, experts: E, topK: k, seqs: seqs)
            var spec = ReplaySpec(model: tinyModel(layers: layers, experts: E, topK: k), hardware: tinyHardware(),
                                  policy: .lru, budget: .experts(E * layers))
            spec.serving.scheduler = .static
            spec.serving.batch = B
            var none = NoEvents()
            let r = try Replayer.serve(trace: trace, plan: StepPlan(trace), spec: spec, sink: &none).result
            let expected = Double(E) * (1 - pow(1 - Double(k) / Double(E), Double(B)))
            let got = try #require(r.distinctExpertsPerLayer)
            #expect(abs(got - expected) / expected < 0.02, "B = \(B): \(got) against \(expected)")
            #expect(r.meanBatch == Double(B))
        }
    }

    /// SIMULATION.md's invariants at batch > 1, every strategy, over seeds: memory within the budget, the prefetch
    /// identity, and LRU never beats Belady on the order Belady is given (LRU's own).
    @Test func invariantsHoldUnderContinuousBatching() throws {
        for seed in propertySeeds(6, from: 0) {
            let trace = zipfTrace(seed: seed, layers: 4, experts: 8, topK: 2, tokens: 90, sequences: 6, prefill: 6)
            var hits: [PolicyKind: Int] = [:]
            for policy in PolicyKind.allCases {
                var spec = ReplaySpec(model: tinyModel(layers: 4, experts: 8, topK: 2), hardware: tinyHardware(),
                                      policy: policy, budget: .experts(9))
                spec.serving.scheduler = .continuous
                spec.serving.maxSeqs = 3
                spec.serving.maxTokens = 8
                spec.serving.prefillChunk = 4
                spec.serving.arrivals = .poisson(rate: 2_000, seed: seed)
                var none = NoEvents()
                let r = try Replayer.serve(trace: trace, plan: StepPlan(trace), spec: spec, sink: &none).result
                let p = r.counters.prefetch
                #expect(p.useful + p.late + p.wasted + p.cancelled == p.issued, "seed \(seed) \(policy)")
                if policy != .allResident { #expect(r.counters.peakExpertBytes <= r.budgetBytes, "seed \(seed) \(policy)") }
                #expect(r.tokens == trace.tokenCount && r.serving?.requests == 6)
                hits[policy] = r.counters.hits
            }
            #expect(hits[.lru]! <= hits[.belady]!, "seed \(seed)")
        }
    }

    @Test func badServingSettingsAreRefusedNamingTheField() throws {
        var o = ServingOptions()
        o.scheduler = .continuous
        o.maxSeqs = 8
        o.maxTokens = 4
        #expect(throws: ConfigError.self) { try o.validate() }
        do { try o.validate() } catch { #expect("\(error)".contains("serving.max_tokens")) }
        o.maxTokens = 64
        o.slo = ServiceLevel(ttftSeconds: 0, tpotSeconds: 0.1)
        do { try o.validate(); Issue.record("a zero SLO passed") } catch { #expect("\(error)".contains("serving.slo_ttft_s")) }
        for text in ["poisson:-1", "poisson:nan", "closed:0:1", "closed:2", "sometimes", "poisson:1:x"] {
            do { _ = try ArrivalProcess.parse(text); Issue.record("\(text) passed") } catch { #expect("\(error)".contains("arrivals")) }
        }
        #expect(try ArrivalProcess.parse("poisson:2.5") == .poisson(rate: 2.5, seed: 1))
        #expect(try ArrivalProcess.parse("closed:4:0.5") == .closedLoop(users: 4, thinkSeconds: 0.5))
    }

    @Test func aSequenceSplitAcrossTheTraceIsRefused() throws {
        let trace = makeTrace([[[0]], [[1]], [[2]]], experts: 4, topK: 1, seqs: [0, 1, 0])
        #expect(throws: ConfigError.self) { _ = try ServingRequest.all(in: trace) }
    }
}

/// Serving settings as users write them: a config's `serving:` section, sweep axes, and the command line.
@Suite struct ServingConfigTests {
    @Test func aConfigServingSectionAndItsErrorsWithLines() throws {
        let base = "trace: t.jsonl\nmodel: mixtral-8x7b\nhardware: a100-80gb-pcie\nbudget: 25%\n"
        let cfg = try RunConfig.parse(base + #"serving: {scheduler: continuous, max_seqs: 8, max_tokens: 64, arrivals: "poisson:2:7", slo_ttft_s: 2, slo_tpot_s: 0.2}"#,
                                      path: "c.yaml")
        #expect(cfg.serving.scheduler == .continuous && cfg.serving.maxSeqs == 8 && cfg.serving.maxTokens == 64)
        #expect(cfg.serving.arrivals == .poisson(rate: 2, seed: 7))
        #expect(cfg.serving.slo == ServiceLevel(ttftSeconds: 2, tpotSeconds: 0.2))
        func message(_ serving: String) -> String {
            do { _ = try RunConfig.parse(base + serving, path: "c.yaml"); return "no error" } catch { return "\(error)" }
        }
        #expect(message("serving: {scheduler: continuous, max_seqs: 8, max_tokens: 4}").hasPrefix("c.yaml:5:"))
        #expect(message("serving: {scheduler: continuous, max_seqs: 8, max_tokens: 4}").contains("serving.max_tokens"))
        #expect(message("serving: {scheduler: static, slo_ttft_s: -1, slo_tpot_s: 1}").contains("serving.slo_ttft_s"))
        #expect(message("serving: {scheduler: static, slo_ttft_s: 1}").contains("slo_tpot_s"))
        #expect(message("serving: {schedular: static}").contains("Did you mean 'serving.scheduler'"))
        #expect(message("serving: {arrivals: poisson:1}").contains("serving.scheduler"))  // sequential takes no arrivals
    }

    @Test func sweepAxesOverBatchAndArrivalRateServeEveryCell() throws {
        let yaml = """
            traces: [\(packageRoot)/traces/golden-tiny.jsonl]
            models: [{preset: mixtral-8x7b, layers: 2, experts: 4, top_k: 2, name: tiny}]
            hardware: [a100-80gb-pcie]
            policies: [lru, belady]
            serving: {scheduler: continuous}
            axes:
              budget: [3experts]
              serving.max_seqs: [1, 4]
              serving.arrivals: ["poisson:1", "poisson:100"]
            """
        let cfg = try SweepConfig.parse(yaml, path: "s.yaml")
        let cells = try cfg.cells()
        #expect(cells.map(\.spec.serving.maxSeqs) == [1, 1, 1, 1, 4, 4, 4, 4])
        #expect(cells.map(\.spec.serving.arrivals.label) == ["poisson:1.0:1", "poisson:1.0:1", "poisson:100.0:1", "poisson:100.0:1",
                                                            "poisson:1.0:1", "poisson:1.0:1", "poisson:100.0:1", "poisson:100.0:1"])
        let out = temporaryDirectory() + "/s.csv"
        try SweepRunner(config: cfg, output: out, jobs: 2).run()
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let column = { (name: String) in lines.dropFirst().map { $0[lines[0].firstIndex(of: name)!] } }
        #expect(column("scheduler") == Array(repeating: "continuous", count: 8))
        #expect(column("batch") == ["1", "1", "1", "1", "4", "4", "4", "4"])
        #expect(column("requests").allSatisfy { !$0.isEmpty && $0 != "0" })
        // The HTML report plots against the axis that varies first (batch: budget has one value) and adds the
        // serving plots; a sequential sweep's has neither.
        let table = try ReportTable.load(out)
        #expect(HTMLReport.axis(for: table) == "batch")
        let page = try HTMLReport.html(table, source: out, x: HTMLReport.axis(for: table))
        for metric in ["output_tokens_per_s", "request_tpot_p99_s", "request_ttft_p99_s", "peak_kv_bytes"] {
            #expect(page.contains("rotate(-90)\" text-anchor=\"middle\">\(metric)"), "no plot of \(metric)")
        }
        #expect(!page.contains(">goodput_rps</text>"), "no SLO was given")
        #expect(throws: ConfigError.self) { _ = try SweepConfig.parse(yaml.replacingOccurrences(of: "\"poisson:100\"", with: "\"poisson:0\""), path: "s.yaml") }
    }
}

/// `arrival_s`: a sequence's arrival recorded on its first line.
@Suite struct RecordedArrivalTests {
    let header = #"{"format":"moe-routing-trace","version":1,"model":"t","layers":1,"experts":4,"top_k":1}"#

    func load(_ lines: [String]) throws -> RoutingTrace {
        try RoutingTrace.load(writeTemporary(([header] + lines).joined(separator: "\n") + "\n"))
    }

    func error(_ lines: [String]) -> String {
        do { _ = try load(lines); return "no error" } catch { return "\(error)" }
    }

    @Test func arrivalsAreReadKeptAndServedAtThoseTimes() throws {
        let trace = try load([
            #"{"seq":0,"pos":0,"phase":"decode","arrival_s":0.5,"experts":[[1]]}"#,
            #"{"seq":0,"pos":1,"phase":"decode","experts":[[2]]}"#,
            #"{"seq":1,"pos":0,"phase":"decode","arrival_s":2.25,"experts":[[3]]}"#,
        ])
        #expect(trace.arrivalSeconds == [0: 0.5, 2: 2.25])
        let copy = temporaryDirectory() + "/copy.jsonl"
        try trace.write(to: copy)
        #expect(try RoutingTrace.load(copy).arrivalSeconds == [0: 0.5, 2: 2.25])
        #expect(throws: ConfigError.self) { try trace.write(to: temporaryDirectory() + "/t.moet") }
        var options = ServingOptions()
        options.scheduler = .continuous
        options.arrivals = try ArrivalProcess.parse("trace")
        let scheduler = try ServingScheduler(trace: trace, options: options)
        var now: Int64 = 0
        while let run = try scheduler.next(at: now) { now = max(now, run.notBefore) + 1_000 }
        #expect(scheduler.log.arrival == [500_000_000, 2_250_000_000])
        #expect(scheduler.log.start == [500_000_000, 2_250_000_000])
    }

    /// The serving window starts with the first step: a single request arriving at 1 s, served in 412 µs (both layers
    /// copy their expert), gives `sim_seconds` 412 µs and 1 / 412 µs requests a second, not a rate over 1.000412 s.
    @Test func simulatedTimeCountsFromTheFirstStep() throws {
        let two = #"{"format":"moe-routing-trace","version":1,"model":"t","layers":2,"experts":4,"top_k":1}"#
        let trace = try RoutingTrace.load(writeTemporary(two + "\n" +
            #"{"seq":0,"pos":0,"phase":"decode","arrival_s":1,"experts":[[0],[0]]}"# + "\n"))
        var spec = ReplaySpec(model: tinyModel(layers: 2, experts: 4, topK: 1), hardware: tinyHardware(), policy: .lru,
                              budget: .experts(8))
        spec.serving.scheduler = .continuous
        spec.serving.arrivals = .recorded
        let (r, log) = try Replayer.serve(trace: trace, plan: StepPlan(trace), spec: spec)
        #expect(log.start == [1_000_000_000] && log.finish == [1_000_412_000])
        #expect(r.counters.simNanoseconds == 412_000 && r.serving?.requestsPerSecond == 1 / 412e-6)
    }

    @Test func badArrivalsNameTheLineAndField() {
        let negative = error([#"{"seq":0,"pos":0,"phase":"decode","arrival_s":-1,"experts":[[1]]}"#])
        #expect(negative.contains(":2") && negative.contains("arrival_s"))
        let text = error([#"{"seq":0,"pos":0,"phase":"decode","arrival_s":"soon","experts":[[1]]}"#])
        #expect(text.contains(":2") && text.contains("arrival_s"))
        let decreasing = error([#"{"seq":0,"pos":0,"phase":"decode","arrival_s":3,"experts":[[1]]}"#,
                                #"{"seq":1,"pos":0,"phase":"decode","arrival_s":2,"experts":[[1]]}"#])
        #expect(decreasing.contains(":3") && decreasing.contains("arrival order"))
        let notFirst = error([#"{"seq":0,"pos":0,"phase":"decode","experts":[[1]]}"#,
                              #"{"seq":0,"pos":1,"phase":"decode","arrival_s":1,"experts":[[1]]}"#])
        #expect(notFirst.contains(":3") && notFirst.contains("first line"))
    }

    @Test func servingByTraceArrivalsNeedsEverySequenceToHaveOne() throws {
        let trace = try load([#"{"seq":0,"pos":0,"phase":"decode","arrival_s":1,"experts":[[1]]}"#,
                              #"{"seq":1,"pos":0,"phase":"decode","experts":[[2]]}"#])
        var options = ServingOptions()
        options.scheduler = .static
        options.arrivals = .recorded
        do { _ = try ServingScheduler(trace: trace, options: options); Issue.record("accepted") } catch {
            #expect("\(error)".contains("sequence 1 has none"))
        }
    }
}
