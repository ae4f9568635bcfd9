import Foundation
import Testing
@testable import MoESim

/// Three tiers (docs/tiers.md): an SSD below a host tier of limited size. A hand-worked scenario with its exact
/// event log, properties over seeds, and bad input.
@Suite struct TierTests {
    /// tinyHardware with an SSD of 0.5 GB/s + 10 µs per read (one expert of 200 kB: 410 µs alone) and host memory
    /// for `hostExperts` of the tiny model's experts.
    static func threeTiers(hostExperts: Int, queueDepth: Int = 1, engines: Int = 1) -> HardwareProfile {
        var hw = tinyHardware(engines: engines)
        hw.tiers.hostExpertBytes = Double(hostExperts * tinyModel().expertBytes)
        hw.tiers.ssdBytesPerSecond = 5e8
        hw.tiers.ssdLatencySeconds = 10e-6
        hw.tiers.ssdQueueDepth = queueDepth
        return hw
    }

    @Test func hostHitsAndSSDReadsEventLog() throws {
        // One layer of 4 experts, top-1; GPU budget one expert, host memory two (0 and 1 at the start, 0 the least
        // recently used). Steps route to 0, 2, 0, 3.
        let trace = makeTrace([[[0]], [[2]], [[0]], [[3]]], experts: 4, topK: 1)
        let model = tinyModel(layers: 1, experts: 4, topK: 1)
        let (r, events) = try replayLogged(trace, model: model, hardware: Self.threeTiers(hostExperts: 2), policy: .lru,
                                           budget: .experts(1))
        // Non-expert compute 2 µs; GPU copy 201 µs; SSD read 10 µs + 200 kB / 0.5 GB/s = 410 µs; compute 3 µs.
        let expected: [(SimEvent, Int64)] = [
            // Step 0: 0 is in host memory (a host hit, now the most recently used there): copied at the gate.
            (.layerStart(step: 0, layer: 0), 0), (.gate(step: 0, layer: 0), 2_000), (.miss(expert: 0), 2_000),
            (.copyStart(expert: 0), 2_000), (.copyEnd(expert: 0), 203_000), (.computeStart(expert: 0), 203_000),
            (.computeEnd(expert: 0), 206_000), (.layerEnd(step: 0, layer: 0), 206_000),
            // Step 1: 2 is on the SSD: host memory evicts its least recently used expert (1), the read takes 410 µs,
            // and the GPU copy starts when it lands.
            (.layerStart(step: 1, layer: 0), 206_000), (.gate(step: 1, layer: 0), 208_000), (.evict(expert: 0), 208_000),
            (.hostEvict(expert: 1), 208_000), (.miss(expert: 2), 208_000), (.readStart(expert: 2), 208_000),
            (.readEnd(expert: 2), 618_000), (.copyStart(expert: 2), 618_000), (.copyEnd(expert: 2), 819_000),
            (.computeStart(expert: 2), 819_000), (.computeEnd(expert: 2), 822_000), (.layerEnd(step: 1, layer: 0), 822_000),
            // Step 2: 0 is still in host memory (2 came after it): a host hit.
            (.layerStart(step: 2, layer: 0), 822_000), (.gate(step: 2, layer: 0), 824_000), (.evict(expert: 2), 824_000),
            (.miss(expert: 0), 824_000), (.copyStart(expert: 0), 824_000), (.copyEnd(expert: 0), 1_025_000),
            (.computeStart(expert: 0), 1_025_000), (.computeEnd(expert: 0), 1_028_000), (.layerEnd(step: 2, layer: 0), 1_028_000),
            // Step 3: 3 is on the SSD; 2 is now the least recently used in host memory.
            (.layerStart(step: 3, layer: 0), 1_028_000), (.gate(step: 3, layer: 0), 1_030_000), (.evict(expert: 0), 1_030_000),
            (.hostEvict(expert: 2), 1_030_000), (.miss(expert: 3), 1_030_000), (.readStart(expert: 3), 1_030_000),
            (.readEnd(expert: 3), 1_440_000), (.copyStart(expert: 3), 1_440_000), (.copyEnd(expert: 3), 1_641_000),
            (.computeStart(expert: 3), 1_641_000), (.computeEnd(expert: 3), 1_644_000), (.layerEnd(step: 3, layer: 0), 1_644_000),
        ]
        #expect(events.map(\.event) == expected.map(\.0))
        #expect(events.map(\.time.nanoseconds) == expected.map(\.1))
        let t = try #require(r.counters.tiers)
        #expect((t.hits, t.misses, t.late, t.evictions, t.reads, t.bytesRead) == (2, 2, 0, 2, 2, 400_000))
        #expect(t.peakBytes == 400_000 && t.capacityBytes == 400_000)
        #expect(t.linkBusyNanoseconds == 820_000 && r.counters.simNanoseconds == 1_644_000)
    }

    /// The host tier under each registry rule, worked by hand. One layer of 4 experts, top-1; GPU budget one expert
    /// (LRU), host memory two (0 then 1 inserted at the start). Steps route to 0, 0, 2, 1, 3: step 1 hits on the GPU,
    /// so host memory sees asks for 0 (a hit), then reads of 2, 1 (unless kept) and 3.
    /// - lru: 0 asked → order 1, 0; read 2 evicts 1; read 1 evicts 0; read 3 evicts 2.
    /// - fifo: asks do not reorder; read 2 evicts 0 (first in); 1 is a hit; read 3 evicts 1.
    /// - lfu: uses 0: 2, 1: 1 → read 2 evicts 1; read 1 evicts 2 (1 use against 0's 2); read 3 evicts 1 (1 use).
    /// - arc (c = 2): 0's hit moves it to T2; read 2: |T1| = 1 > p = 0 evicts 1 from T1 (ghost in B1); read 1 hits
    ///   ghost B1: p = 1, |T1| = 1 is not above p, so T2's 0 is evicted (ghost in B2), 1 goes to T2; read 3: |T1| = 1
    ///   is not above p = 1: T2's least recent, 1.
    @Test(arguments: [(HostEviction.lru, [1, 0, 2], 1), (.fifo, [0, 1], 2), (.lfu, [1, 2, 1], 1), (.arc, [1, 0, 1], 1)] as [(HostEviction, [Int], Int)])
    func eachHostEvictionRuleByHand(rule: HostEviction, evicted: [Int], hits: Int) throws {
        let trace = makeTrace([[[0]], [[0]], [[2]], [[1]], [[3]]], experts: 4, topK: 1)
        let model = tinyModel(layers: 1, experts: 4, topK: 1)
        var hw = Self.threeTiers(hostExperts: 2)
        hw.tiers.hostEviction = rule
        let (r, events) = try replayLogged(trace, model: model, hardware: hw, policy: .lru, budget: .experts(1))
        let evictions = events.compactMap { if case let .hostEvict(e) = $0.event { e } else { nil } }
        #expect(evictions == evicted)
        let t = try #require(r.counters.tiers)
        #expect((t.hits, t.misses, t.evictions) == (hits, 4 - hits, evicted.count))
        #expect(Metric.row(r)[Metric.columns(.tiers).firstIndex(of: .hostEviction)!] == rule.rawValue)
    }

    @Test func readsShareTheDrive() throws {
        // Two experts on the SSD asked for at one gate, queue depth 2: both reads run at once at half the rate each
        // (10 µs set-up, then 400 µs of transfer at half rate: both land at 2 + 810 µs).
        let trace = makeTrace([[[1, 2]]], experts: 4, topK: 2)
        let model = tinyModel(layers: 1, experts: 4, topK: 2)
        let (r, events) = try replayLogged(trace, model: model, hardware: Self.threeTiers(hostExperts: 1, queueDepth: 2),
                                           policy: .lru, budget: .experts(2))
        let reads = events.filter { if case .readEnd = $0.event { true } else { false } }.map(\.time.nanoseconds)
        #expect(reads == [812_000, 812_000])
        // Host memory holds one expert: the first read is admitted (evicting 0), the second bypasses it.
        #expect(r.counters.tiers?.bypassReads == 1)
        // Both GPU copies are sent at 812 µs, one engine: 201 µs each, back to back; the computes follow.
        #expect(r.counters.simNanoseconds == 812_000 + 2 * 201_000 + 3_000)
    }

    /// Three tiers whose host memory holds every expert equal two tiers, for every strategy, any SSD.
    @Test(arguments: [1, 4])
    func aFullHostTierEqualsTwoTiers(queueDepth: Int) throws {
        let model = tinyModel(layers: 3, experts: 8, topK: 2)
        for seed in propertySeeds(6) {
            let trace = zipfTrace(seed: seed, layers: 3, experts: 8, topK: 2, tokens: 40)
            var full = Self.threeTiers(hostExperts: 24, queueDepth: queueDepth)
            full.tiers.ssdBytesPerSecond = 1e30
            for policy in PolicyKind.allCases {
                let two = try replay(trace, model: model, policy: policy, budget: .experts(6))
                let three = try replay(trace, model: model, hardware: full, policy: policy, budget: .experts(6))
                #expect(Metric.row(two, []) == Metric.row(three, []), "\(policy), seed \(seed)")
                #expect(three.counters.tiers?.reads == 0, "\(policy), seed \(seed)")
            }
        }
    }

    /// Over seeds (each with a host eviction rule), strategies, engine counts and queue depths: host memory within
    /// its capacity; every GPU copy of an expert starts only once host memory holds it or its read has landed; the
    /// drive's reads never start before
    /// the one ahead of them (one slot) and never land before they start; bytes read are reads × expert bytes; the
    /// demand side of host memory adds up; a timeline does not change the row.
    @Test(arguments: [(1, 1), (2, 4)])
    func tiersKeepTheirInvariants(engines: Int, queueDepth: Int) throws {
        let model = tinyModel(layers: 3, experts: 8, topK: 2)
        let expertBytes = model.expertBytes
        for seed in propertySeeds(5) {
            let trace = zipfTrace(seed: seed, layers: 3, experts: 8, topK: 2, tokens: 50, prefill: 6)
            for hostExperts in [1, 5, 12] {
                var hw = Self.threeTiers(hostExperts: hostExperts, queueDepth: queueDepth, engines: engines)
                hw.tiers.hostEviction = HostEviction.allCases[Int(seed) % HostEviction.allCases.count]
                for policy in PolicyKind.allCases where policy != .allResident {
                    let label = "\(policy), seed \(seed), host \(hostExperts), \(engines) engines, depth \(queueDepth)"
                    let (r, events) = try replayLogged(trace, model: model, hardware: hw, policy: policy, budget: .experts(6))
                    let plain = try replay(trace, model: model, hardware: hw, policy: policy, budget: .experts(6))
                    #expect(Metric.row(r) == Metric.row(plain), "\(label)")
                    let t = try #require(r.counters.tiers)
                    #expect(t.peakBytes <= t.capacityBytes, "\(label)")
                    #expect(t.bytesRead == t.reads * expertBytes, "\(label)")
                    #expect(t.bypassReads <= t.misses, "\(label)")
                    if policy == .lru || policy == .belady {  // demand copies only: each asks host memory once
                        #expect(t.hits + t.misses + t.late == r.counters.misses, "\(label)")
                    }
                    Self.checkReads(events, hostExperts: hostExperts, queueDepth: queueDepth, label)
                }
            }
        }
    }

    /// Replays the event log's host memory: it starts with experts 0 ..< `hostExperts`; a read admits (or stages)
    /// its expert when it lands; `hostEvict` removes it. A GPU copy must be issued (its miss or prefetch) while host
    /// memory holds its expert, or start after a read of it landed since.
    static func checkReads(_ events: [ScheduledEvent], hostExperts: Int, queueDepth: Int, _ label: String) {
        // Reads of one expert may overlap (one bypassing host memory, the next admitted): open ones by start.
        var inHost = Set(0..<hostExperts), readOpen: [Int: [Int64]] = [:], fromHost: [Int: Bool] = [:]
        var lastStart: Int64 = 0, lastEnd: Int64 = 0
        for e in events {
            let time = e.time.nanoseconds
            switch e.event {
            case let .readStart(x):
                readOpen[x, default: []].append(time)
                if queueDepth == 1 { #expect(time >= lastEnd && time >= lastStart, "\(label): a read started before the one ahead landed") }
                lastStart = time
            case let .readEnd(x):
                #expect(readOpen[x]?.first.map { $0 <= time } ?? false, "\(label): read of \(x) landed before it started")
                if readOpen[x]?.isEmpty == false { readOpen[x]!.removeFirst() }
                inHost.insert(x)  // a read that bypassed host memory is staged there until its copy is issued
                fromHost[x] = true
                lastEnd = time
            case let .hostEvict(x):
                #expect(inHost.contains(x), "\(label): evicted \(x), not in host memory")
                inHost.remove(x)
            case let .miss(x), let .prefetch(x):
                fromHost[x] = inHost.contains(x)
            case let .copyStart(x):
                #expect(fromHost[x] == true, "\(label): copied \(x) from host memory that lacked it when asked")
            default: break
            }
        }
    }

    @Test func badTiersAreRefusedNamingTheField() throws {
        let model = try ModelProfile.preset("mixtral-8x7b")
        let cases: [(String, (inout MemoryTiers) -> Void)] = [
            ("hardware.host_expert_bytes", { $0.ssdBytesPerSecond = 7e9 }),  // an SSD under a host that holds all
            ("hardware.ssd_bytes_per_s", { $0.hostExpertBytes = 40e9 }),  // a host of limited size, no SSD
            ("hardware.host_expert_bytes", { $0.hostExpertBytes = 1e6; $0.ssdBytesPerSecond = 7e9 }),  // below one expert
            ("hardware.ssd_capacity_bytes", { $0.hostExpertBytes = 40e9; $0.ssdBytesPerSecond = 7e9; $0.ssdCapacityBytes = 50e9 }),
            ("hardware.host_expert_bytes", { $0.hostExpertBytes = 20e9; $0.ssdBytesPerSecond = 7e9; $0.pool = .unified }),
            ("hardware.host_eviction", { $0.hostEviction = .lfu }),  // a rule for a host tier that evicts nothing
        ]
        for (field, set) in cases {
            var tiers = MemoryTiers()
            set(&tiers)
            #expect {
                try tiers.validate(expertBytes: model.expertBytes, totalExpertBytes: model.totalExpertBytes,
                                   budgetBytes: 21 << 30)
            } throws: { error in
                guard case let ConfigError.invalidValue(f, _, _) = error else { return false }
                return f == field
            }
        }
    }

    @Test func aConfigNamesTheLineOfTheTierAtFault() throws {
        let dir = temporaryDirectory()
        let config = dir + "/tiers.yaml"
        try """
            trace: t.jsonl
            model: mixtral-8x7b
            hardware:
              preset: h100-sxm
              ssd: pcie4-nvme
              host_expert_bytes: 1e6
            budget: 25%
            """.write(toFile: config, atomically: true, encoding: .utf8)
        #expect { try RunConfig.load(config) } throws: { error in
            "\(error)".contains("tiers.yaml:6") && "\(error)".contains("hardware.host_expert_bytes")
                && "\(error)".contains("at least one expert")
        }
        try "trace: t.jsonl\nmodel: mixtral-8x7b\nhardware: {preset: h100-sxm, ssd: pcie9}\nbudget: 25%\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        #expect { try RunConfig.load(config) } throws: { error in
            "\(error)".contains("tiers.yaml:3") && "\(error)".contains("pcie4-nvme")
        }
    }

    /// `hardware.tiers`, the ordered list, sets exactly what the flat keys set (host link keys included).
    @Test func theTierListSetsWhatTheFlatKeysSet() throws {
        let dir = temporaryDirectory()
        func hardware(_ section: String) throws -> HardwareProfile {
            try "trace: t.jsonl\nmodel: mixtral-8x7b\nhardware:\n  preset: h100-sxm\n\(section)budget: 25%\n"
                .write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
            return try RunConfig.load(dir + "/c.yaml").hardware
        }
        let list = try hardware("""
              tiers:
                - {tier: ssd, read_bytes_per_s: 3e9, read_latency_s: 50e-6, queue_depth: 8, capacity_bytes: 2e12}
                - {tier: host, capacity_bytes: 256e9, pool: unified, read_bytes_per_s: 20e9, read_latency_s: 7e-6, queue_depth: 2}
                - {tier: gpu, memory_bytes: 90e9}

            """)
        let flat = try hardware("""
              ssd_bytes_per_s: 3e9
              ssd_latency_s: 50e-6
              ssd_queue_depth: 8
              ssd_capacity_bytes: 2e12
              host_expert_bytes: 256e9
              memory_pool: unified
              link_bytes_per_s: 20e9
              link_latency_s: 7e-6
              copy_engines: 2
              gpu_memory_bytes: 90e9

            """)
        #expect(list == flat)
        #expect(list.tiers.hostExpertBytes == 256e9 && list.tiers.ssdQueueDepth == 8 && list.copyEngines == 2)
        let drive = try hardware("  tiers: [{tier: ssd, drive: pcie5-nvme}, {tier: host, capacity_bytes: 1e11}, {tier: gpu}]\n")
        #expect(drive.tiers.drive == "pcie5-nvme" && drive.tiers.ssdBytesPerSecond == 14500e6)
        #expect(try hardware("  tiers: [{tier: host}, {tier: gpu}]\n") == hardware(""))
    }

    /// Each way a tiers list can be wrong, refused with the line of the entry at fault (the first entry is line 6)
    /// and what is expected.
    @Test(arguments: [
        ("- {tier: host, capacity_bytes: 40e9}\n- {tier: ssd, drive: pcie4-nvme}\n- {tier: gpu}", 7, "tiers out of order: ssd after host"),
        ("- {tier: gpu}\n- {tier: host}", 7, "tiers out of order: host after gpu"),
        ("- {tier: ssd}\n- {tier: host, capacity_bytes: 40e9}\n- {tier: gpu}", 6, "the ssd tier has no link"),
        ("- {tier: ssd, drive: pcie4-nvme}\n- {tier: host}\n- {tier: gpu}", 7, "give the host tier between them its capacity_bytes"),
        ("- {tier: ssd, drive: pcie4-nvme}\n- {tier: gpu}", 6, "give the host tier between them its capacity_bytes"),
        ("- {tier: host, capacity_bytes: 40e9}\n- {tier: gpu}", 6, "needs an ssd tier below it"),
        ("- {tier: ssd, drive: pcie4-nvme}\n- {tier: host, capacity_bytes: 40e9}", 7, "ends with the GPU"),
        ("- {tier: gpu, capacity_bytes: 1e9}", 6, "the run's budget"),
        ("- {tier: nvram}\n- {tier: gpu}", 6, "unknown tier 'nvram'"),
        ("- {tier: host}\n- {tier: host}\n- {tier: gpu}", 7, "tier host is listed twice"),
        ("- {tier: ssd, drive: pcie4-nvme}\n- {tier: host, capacity_bytes: 1e6}\n- {tier: gpu}", 7, "at least one expert"),
        ("- {tier: ssd, drive: pcie4-nvme, capacity_bytes: 1e9}\n- {tier: host, capacity_bytes: 40e9}\n- {tier: gpu}", 6, "room for every expert"),
        ("- {tier: ssd, drive: pcie4-nvme}\n- {tier: host, capacity_bytes: 20e9, pool: unified}\n- {tier: gpu}", 7, "shared pool"),
        ("- {tier: host, read_bytes_per_s: -1}\n- {tier: gpu}", 6, "host.read_bytes_per_s"),
        ("- tier: host\n  capacity: 3\n- {tier: gpu}", 7, "takes capacity_bytes"),
    ] as [(String, Int, String)])
    func aBadTierListNamesTheEntryAtFault(list: String, line: Int, message: String) throws {
        let dir = temporaryDirectory()
        let indented = list.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n")
        try "trace: t.jsonl\nmodel: mixtral-8x7b\nhardware:\n  preset: h100-sxm\n  tiers:\n\(indented)\nbudget: 25%\n"
            .write(toFile: dir + "/tiers.yaml", atomically: true, encoding: .utf8)
        #expect { try RunConfig.load(dir + "/tiers.yaml") } throws: { error in
            "\(error)".contains("tiers.yaml:\(line):") && "\(error)".contains(message)
        }
    }

    @Test func theListAndTheFlatKeysAreNotMixed() throws {
        let dir = temporaryDirectory()
        try "trace: t.jsonl\nmodel: mixtral-8x7b\nhardware:\n  preset: h100-sxm\n  host_expert_bytes: 1e11\n  tiers: [{tier: gpu}]\nbudget: 25%\n"
            .write(toFile: dir + "/m.yaml", atomically: true, encoding: .utf8)
        #expect { try RunConfig.load(dir + "/m.yaml") } throws: { error in
            "\(error)".contains("m.yaml:5:") && "\(error)".contains("give one or the other")
        }
    }

    /// A sweep over host memory gets the tier columns, on every row (empty where host memory holds everything
    /// and no SSD is given); a sweep of two-tier cells keeps the two-tier header.
    @Test func aSweepOverHostMemoryHasTheTierColumns() throws {
        let model = "{preset: mixtral-8x7b, layers: 2, experts: 4, top_k: 2, name: tiny}"
        let yaml = """
            traces: [\(packageRoot)/traces/golden-tiny.jsonl]
            models: [\(model)]
            hardware: [a100-80gb-pcie, {preset: a100-80gb-pcie, name: a100-nvme, ssd: pcie4-nvme, host_expert_bytes: 1e9}]
            policies: [lru, pregated]
            axes:
              budget: [2experts, 3experts]
            """
        let out = temporaryDirectory() + "/s.csv"
        try SweepRunner(config: try SweepConfig.parse(yaml, path: "s.yaml"), output: out).run()
        let table = try Self.csv(out)
        #expect(table[0] == ["cell", "budget"] + Metric.header(.tiers))
        let reads = table[0].firstIndex(of: "ssd_reads")!, hardware = table[0].firstIndex(of: "hardware")!
        #expect(table.count == 1 + 2 * 2 * 2)
        for row in table.dropFirst() {
            #expect(row[hardware] == "a100-nvme" ? Int(row[reads])! > 0 : row[reads].isEmpty, "\(row)")
        }
        let twoTiers = yaml.replacingOccurrences(of: ", {preset: a100-80gb-pcie, name: a100-nvme, ssd: pcie4-nvme, host_expert_bytes: 1e9}", with: "")
        try SweepRunner(config: try SweepConfig.parse(twoTiers, path: "s.yaml"), output: out + "2").run()
        #expect(try Self.csv(out + "2")[0] == ["cell", "budget"] + Metric.header)
    }

    static func csv(_ path: String) throws -> [[String]] {
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        return try CSVFile.records(bytes[...], path: path).map(\.fields)
    }

    /// CPU fallback weighs the SSD read both ways: an expert on the SSD delays the copy as much as the CPU, so a
    /// busy CPU no longer loses to the link when both must wait for the read anyway.
    @Test func cpuFallbackWeighsTheRead() throws {
        let cost = CostModel(model: tinyModel(), hardware: tinyHardware())
        let handler = HostCompute(cost: cost)
        let move = cost.activationTransfer(tokens: 1), work = cost.hostExpertCompute(tokens: 1)
        let copied = cost.expertCopy + cost.expertCompute(tokens: 1)
        try #require(work + move < copied, "the idle CPU must be the faster path for this check")
        let miss = Miss(expert: 3, tokens: 1, weightMax: 0, gate: 0)
        let busy = copied + 1_000_000  // the CPU's queue ends after a copy would be done
        #expect(handler.decide(miss, MissResources(linkFreeAt: 0, hostFreeAt: busy, expertReadyAt: 0)) == .copy)
        #expect(handler.decide(miss, MissResources(linkFreeAt: 0, hostFreeAt: busy, expertReadyAt: busy)) == .host)
    }
}
