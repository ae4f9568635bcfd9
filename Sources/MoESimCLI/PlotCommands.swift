import ArgumentParser
import Foundation
import MoESim

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw a metric against an axis from a report CSV, one line per strategy, as SVG (bounds dashed).")

    @Argument(help: "A CSV written by replay, compare or sweep.") var csv: String
    @Option(help: "Column for the x axis.") var x: String = "budget_experts"
    @Option(help: "Column for the y axis.") var y: String = "tokens_per_s"
    @Option(help: "Column whose values make the lines.") var series: String = "policy"
    @Flag(help: "Logarithmic y axis.") var logY = false
    @Option(help: "The SVG to write.") var out: String

    func run() throws {
        try FileRoles.check(inputs: [("the CSV", csv)], outputs: [("--out", out)])
        try AtomicFileSink.write(LinePlot(table: ReportTable.load(csv), x: x, y: y, series: series, logY: logY).svg(), to: out)
        print("wrote \(out)")
    }
}

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write one self-contained HTML page with plots of the main metrics and the whole table.")

    @Argument(help: "A CSV written by replay, compare or sweep.") var csv: String
    @Option(help: "Column for the plots' x axis (default: the first of budget_experts, batch, arrival_rate, max_tokens, prefill_chunk, lookahead, host_capacity_bytes, gpus whose values vary).")
    var x: String?
    @Option(help: "The HTML file to write.") var out: String

    func run() throws {
        try FileRoles.check(inputs: [("the CSV", csv)], outputs: [("--out", out)])
        let table = try ReportTable.load(csv)
        try AtomicFileSink.write(HTMLReport.html(table, source: csv, x: x ?? HTMLReport.axis(for: table)), to: out)
        print("wrote \(out)")
    }
}
