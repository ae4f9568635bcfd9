import Foundation

/// Views of one replay's ordered event log: a Chrome trace-event timeline, and per-layer and per-step tables.
///
///     var log = EventLog(stepLimit: 20)
///     let result = try Replayer.run(plan: plan, traceName: name, spec: spec, sink: &log)
///     let events = log.drain()
///     try Timeline.write(events, experts: plan.experts, to: "run.json")
///
/// They read only the log, so they cost nothing unless asked for.
public enum Timeline {
    /// Chrome trace-event JSON (opens in Perfetto and chrome://tracing): layers, expert computes and copies as
    /// complete events on their own tracks, hits, misses and evictions as instant events. Times in microseconds.
    public static func json(_ events: [ScheduledEvent], experts: Int) -> String {
        var out: [String] = []
        var openCompute: [Int: SimTime] = [:], openCopy: [Int: SimTime] = [:], openCPU: [Int: SimTime] = [:]
        var openRead: [Int: SimTime] = [:], reads = false
        var openLayer: [String: SimTime] = [:]
        func us(_ t: SimTime) -> String { String(format: "%.3f", Double(t.nanoseconds) / 1000) }
        func name(_ e: Int) -> String { "L\(e / experts)E\(e % experts)" }
        func complete(_ n: String, _ track: Int, _ start: SimTime, _ end: SimTime, _ category: String) {
            out.append("{\"name\":\"\(n)\",\"cat\":\"\(category)\",\"ph\":\"X\",\"pid\":1,\"tid\":\(track),\"ts\":\(us(start)),\"dur\":\(us(end - start))}")
        }
        func instant(_ n: String, _ t: SimTime, _ category: String) {
            out.append("{\"name\":\"\(n)\",\"cat\":\"\(category)\",\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":4,\"ts\":\(us(t))}")
        }
        for e in events {
            switch e.event {
            case let .layerStart(s, l): openLayer["\(s).\(l)"] = e.time
            case let .layerEnd(s, l):
                if let start = openLayer.removeValue(forKey: "\(s).\(l)") { complete("step \(s) layer \(l)", 1, start, e.time, "layer") }
            case let .computeStart(x): openCompute[x] = e.time
            case let .computeEnd(x):
                if let start = openCompute.removeValue(forKey: x) { complete(name(x), 2, start, e.time, "compute") }
            case let .copyStart(x): openCopy[x] = e.time
            case let .copyEnd(x):
                if let start = openCopy.removeValue(forKey: x) { complete("copy \(name(x))", 3, start, e.time, "copy") }
            case let .cpuStart(x): openCPU[x] = e.time
            case let .cpuEnd(x):
                if let start = openCPU.removeValue(forKey: x) { complete("cpu \(name(x))", 5, start, e.time, "cpu") }
            case let .readStart(x): openRead[x] = e.time
            case let .readEnd(x):
                reads = true
                if let start = openRead.removeValue(forKey: x) { complete("read \(name(x))", 6, start, e.time, "read") }
            case let .hostEvict(x): instant("host evict \(name(x))", e.time, "host")
            case let .hit(x): instant("hit \(name(x))", e.time, "hit")
            case let .miss(x): instant("miss \(name(x))", e.time, "miss")
            case let .evict(x): instant("evict \(name(x))", e.time, "evict")
            case let .preload(x): instant("preload \(name(x))", e.time, "preload")
            case let .prefetch(x): instant("prefetch \(name(x))", e.time, "prefetch")
            case let .cancel(x): instant("cancel \(name(x))", e.time, "prefetch")
            case .gate: break
            }
        }
        // The SSD's track only with three tiers, so that a two-tier timeline stays as it was.
        let tracks = ([(1, "layers"), (2, "GPU compute"), (3, "host-to-GPU link"), (4, "cache events"), (5, "host CPU")]
                      + (reads ? [(6, "SSD-to-host link")] : [])).map {
            "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":\($0.0),\"args\":{\"name\":\"\($0.1)\"}}"
        }
        return "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n" + (tracks + out).joined(separator: ",\n") + "\n]}\n"
    }

    public static func write(_ events: [ScheduledEvent], experts: Int, to path: String) throws {
        try AtomicFileSink.write(json(events, experts: experts), to: path)
    }
}

/// Hits, misses and GPU stall per layer, from the event log (`--per-layer`).
public enum LayerBreakdown {
    public static let header = ["layer", "accesses", "hits", "misses", "stall_seconds"]

    /// Stall of a layer = its time from gate to end minus the time the GPU spent computing its experts.
    public static func rows(_ events: [ScheduledEvent], layers: Int, experts: Int) -> [[String]] {
        var hits = [Int](repeating: 0, count: layers), misses = hits
        var stall = [Int64](repeating: 0, count: layers)
        var gate: [String: SimTime] = [:], computing: [Int: SimTime] = [:]
        var computed = [Int64](repeating: 0, count: layers)
        for e in events {
            switch e.event {
            case let .hit(x): hits[x / experts] += 1
            case let .miss(x), let .cpuStart(x): misses[x / experts] += 1
            case let .gate(s, l): gate["\(s).\(l)"] = e.time; computed[l] = 0
            case let .computeStart(x): computing[x] = e.time
            case let .computeEnd(x): if let start = computing.removeValue(forKey: x) { computed[x / experts] += (e.time - start).nanoseconds }
            case let .layerEnd(s, l):
                if let g = gate.removeValue(forKey: "\(s).\(l)") { stall[l] += (e.time - g).nanoseconds - computed[l] }
            default: break
            }
        }
        return (0..<layers).map { l in
            ["\(l)", "\(hits[l] + misses[l])", "\(hits[l])", "\(misses[l])", "\(Double(stall[l]) * 1e-9)"]
        }
    }
}

/// Latency and hits per step (`--per-token`): one row per forward pass, a decode token or a prefill.
public enum StepBreakdown {
    public static let header = ["step", "seq", "phase", "tokens", "start_s", "latency_s", "hits", "misses"]

    public static func rows(_ events: [ScheduledEvent], plan: StepPlan) -> [[String]] {
        var start: [Int: SimTime] = [:], end: [Int: SimTime] = [:]
        var hits: [Int: Int] = [:], misses: [Int: Int] = [:]
        var current = 0
        for e in events {
            switch e.event {
            case let .layerStart(s, l): if l == 0 { start[s] = e.time }; current = s
            case let .layerEnd(s, _): end[s] = e.time
            case .hit: hits[current, default: 0] += 1
            case .miss, .cpuStart: misses[current, default: 0] += 1
            default: break
            }
        }
        return start.keys.sorted().compactMap { s in
            guard let a = start[s], let b = end[s] else { return nil }
            return ["\(s)", "\(plan.stepSeq[s])", "\(plan.stepPhase[s])", "\(plan.stepTokens[s])", "\(a.seconds)",
                    "\((b - a).seconds)", "\(hits[s, default: 0])", "\(misses[s, default: 0])"]
        }
    }
}
