import Foundation
import Testing
@testable import MoESim

@Suite struct SweepTests {
    static let yaml = """
        traces: [\(packageRoot)/traces/golden-tiny.jsonl]
        models: [{preset: mixtral-8x7b, layers: 2, experts: 4, top_k: 2, name: tiny}]
        hardware: [a100-80gb-pcie, {preset: t4, link_bytes_per_s: 8e9}]
        policies: [lru, belady, pregated]
        axes:
          budget: [2experts, 3experts, 4experts, 6experts]
          prefetch.buffer: [0.5, 1.0]
        """

    @Test func aSweepHasOneRowPerCellInCellOrder() throws {
        let cfg = try SweepConfig.parse(Self.yaml, path: "s.yaml")
        let cells = try cfg.cells()
        #expect(cells.count == 1 * 1 * 2 * 4 * 2 * 3)
        let out = temporaryDirectory() + "/s.csv"
        try SweepRunner(config: cfg, output: out, jobs: 2).run()
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == cells.count + 1)
        #expect(lines[0].hasPrefix("cell,budget,prefetch.buffer,trace,"))
        #expect(lines.dropFirst().map { Int($0.split(separator: ",")[0])! } == Array(0..<cells.count))
        #expect(!FileManager.default.fileExists(atPath: out + ".partial"))
        // Each row matches a single replay of its cell.
        let trace = try RoutingTrace.load(cfg.traces[0])
        let one = try Replayer.run(plan: StepPlan(trace), traceName: trace.name, spec: cells[7].spec)
        #expect(String(lines[8]) == CSVFile.line(["7"] + cells[7].axisValues + Metric.row(one)).dropLast())
    }

    @Test func jobsAndShardsGiveTheSameBytes() throws {
        let cfg = try SweepConfig.parse(Self.yaml, path: "s.yaml")
        let dir = temporaryDirectory()
        try SweepRunner(config: cfg, output: dir + "/one.csv", jobs: 1).run()
        try SweepRunner(config: cfg, output: dir + "/two.csv", jobs: 2).run()
        for i in 1...3 { try SweepRunner(config: cfg, output: dir + "/shard\(i).csv", jobs: 2, shard: (i, 3)).run() }
        try SweepRunner.merge((1...3).map { dir + "/shard\($0).csv" }, to: dir + "/merged.csv")
        let one = try Data(contentsOf: URL(fileURLWithPath: dir + "/one.csv"))
        #expect(one == (try Data(contentsOf: URL(fileURLWithPath: dir + "/two.csv"))))
        #expect(one == (try Data(contentsOf: URL(fileURLWithPath: dir + "/merged.csv"))))
        #expect(throws: ConfigError.self) { try SweepRunner.merge([dir + "/shard1.csv", dir + "/shard1.csv"], to: dir + "/x.csv") }
    }

    /// golden-tiny is one sequence: a static-frequency cell cannot split it, and the sweep says so before any cell
    /// runs, leaving no output and no journal.
    @Test func aCellThatCannotSplitItsTraceStopsTheSweepBeforeItStarts() throws {
        let cfg = try SweepConfig.parse(Self.yaml.replacingOccurrences(of: "[lru, belady, pregated]", with: "[lru, static-frequency]")
                                            .replacingOccurrences(of: "prefetch.buffer: [0.5, 1.0]", with: "placement.train_split: [0.5, 0.75]"),
                                        path: "s.yaml")
        let out = temporaryDirectory() + "/s.csv"
        #expect { try SweepRunner(config: cfg, output: out, jobs: 2).run() } throws: {
            "\($0)".contains("policy static-frequency (cell 1)") && "\($0)".contains("at least two sequences to split (golden-tiny has 1)")
        }
        #expect(!FileManager.default.fileExists(atPath: out) && !FileManager.default.fileExists(atPath: out + ".partial"))
    }

    @Test func sweepConfigErrorsNameTheKey() {
        func message(_ yaml: String) -> String {
            do { _ = try SweepConfig.parse(yaml, path: "s.yaml"); return "no error" } catch { return "\(error)" }
        }
        let base = "traces: [t.jsonl]\nmodels: [mixtral-8x7b]\nhardware: [t4]\npolicies: [lru]\n"
        #expect(message(base + "axes:\n  budget: [10%]\n  hardware.link_byte_per_s: [1e9]").contains("Did you mean 'hardware.link_bytes_per_s'?"))
        #expect(message(base + "axes:\n  budget: [10%, lots]").hasPrefix("s.yaml:6: invalid budget 'lots'"))
        #expect(message(base + "axes:\n  hardware.gpu_flops: [1e12]").contains("axes must include budget"))
        #expect(message(base + "axis:\n  budget: [10%]").contains("unknown key 'axis'. Did you mean 'axes'?"))
    }
}

#if canImport(FoundationXML)
import FoundationXML
#endif

@Suite struct PlotTests {
    @Test func plotsAndReportsParseWithOneSeriesPerStrategy() throws {
        let cfg = try SweepConfig.parse(SweepTests.yaml, path: "s.yaml")
        let dir = temporaryDirectory()
        try SweepRunner(config: cfg, output: dir + "/s.csv", jobs: 2).run()
        let table = try ReportTable.load(dir + "/s.csv")
        let svg = try LinePlot(table: table, x: "budget_experts", y: "tokens_per_s").svg()
        let doc = try XMLDocument(data: Data(svg.utf8))
        let names = try doc.nodes(forXPath: "//*[local-name()='g'][@class='series']/@data-name").compactMap(\.stringValue)
        #expect(names == ["lru", "belady", "pregated"])
        let dashed = try doc.nodes(forXPath: "//*[local-name()='g'][@data-name='belady']/*[local-name()='polyline'][@stroke-dasharray]")
        #expect(dashed.count == 1, "bounds are dashed")
        let solid = try doc.nodes(forXPath: "//*[local-name()='g'][@data-name='lru']/*[local-name()='polyline'][@stroke-dasharray]")
        #expect(solid.isEmpty)
        // One point per budget on each line (the other axes are averaged).
        let points = try doc.nodes(forXPath: "//*[local-name()='g'][@data-name='lru']/*[local-name()='circle']")
        #expect(points.count == 4)
        let html = try HTMLReport.html(table, source: "s.csv", x: "budget_experts")
        let page = try XMLDocument(data: Data(html.utf8))
        #expect(try page.nodes(forXPath: "//*[local-name()='svg']").count == 4, "a sequential sweep has no serving plots")
        #expect(HTMLReport.axis(for: table) == "budget_experts")
        #expect(try page.nodes(forXPath: "//*[local-name()='tbody']/*[local-name()='tr']").count == table.rows.count)
        #expect(throws: ConfigError.self) { try LinePlot(table: table, x: "budget_expert", y: "tokens_per_s").svg() }
    }
}
