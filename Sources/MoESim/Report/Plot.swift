import Foundation

/// A report CSV read back as columns of text, for plots and HTML reports.
public struct ReportTable: Sendable {
    public let header: [String]
    public let rows: [[String]]

    /// Parses RFC 4180 CSV (quoted fields with commas, quotes and line breaks).
    public static func load(_ path: String) throws -> ReportTable {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError.file(path: path, line: nil, message: "cannot read the CSV")
        }
        let records = try CSVFile.records([UInt8](data)[...], path: path).filter { $0.fields != [""] }
        guard let header = records.first?.fields else { throw ConfigError.file(path: path, line: 1, message: "empty CSV") }
        for r in records where r.fields.count != header.count {
            throw ConfigError.file(path: path, line: r.line, message: "\(r.fields.count) fields, the header has \(header.count)")
        }
        return ReportTable(header: header, rows: records.dropFirst().map(\.fields))
    }

    public func column(_ name: String) throws -> Int {
        guard let i = header.firstIndex(of: name) else {
            let hint = closestMatch(name, among: header).map { " Did you mean '\($0)'?" } ?? ""
            throw ConfigError.invalidValue(field: "column", value: name, expected: "a column of the CSV.\(hint)")
        }
        return i
    }
}

/// A line chart of one metric against one axis, one line per series (by default per policy), written as SVG by
/// our own code. Bounds (`belady`, `all-resident`, `oracle-prefetch`) are drawn dashed.
///
///     let svg = try LinePlot(table: t, x: "budget_experts", y: "tokens_per_s").svg()
///
/// Rows with the same x in one series (other axes) are averaged; empty cells are skipped.
public struct LinePlot: Sendable {
    public let table: ReportTable
    public let x: String
    public let y: String
    public var series = "policy"
    public var logY = false
    public var title: String?

    public init(table: ReportTable, x: String, y: String, series: String = "policy", logY: Bool = false, title: String? = nil) {
        self.table = table; self.x = x; self.y = y; self.series = series; self.logY = logY; self.title = title
    }

    static let bounds: Set<String> = ["belady", "all-resident", "oracle-prefetch"]
    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                          "#bcbd22", "#17becf", "#393b79", "#637939"]

    /// The series, in first-appearance order, each with (x, mean y) points sorted by x.
    public func lines() throws -> [(name: String, points: [(Double, Double)])] {
        let xi = try table.column(x), yi = try table.column(y), si = try table.column(series)
        var order: [String] = [], sums: [String: [Double: (Double, Int)]] = [:]
        for row in table.rows {
            guard let xv = Double(row[xi]), let yv = Double(row[yi]), !(logY && yv <= 0) else { continue }
            let name = row[si]
            if sums[name] == nil { order.append(name); sums[name] = [:] }
            let (s, n) = sums[name]![xv] ?? (0, 0)
            sums[name]![xv] = (s + yv, n + 1)
        }
        return order.map { name in (name, sums[name]!.keys.sorted().map { ($0, sums[name]![$0]!.0 / Double(sums[name]![$0]!.1)) }) }
    }

    public func svg(width: Double = 720, height: Double = 440) throws -> String {
        let lines = try lines()
        let all = lines.flatMap(\.points)
        guard !all.isEmpty else { throw ConfigError.invalidValue(field: "plot", value: y, expected: "numeric values in columns \(x) and \(y)") }
        let (left, right, top, bottom) = (70.0, 170.0, 40.0, 50.0)
        let xs = all.map(\.0), ys = all.map { logY ? log10($0.1) : $0.1 }
        var (x0, x1, y0, y1) = (xs.min()!, xs.max()!, min(0, ys.min()!), ys.max()!)
        if logY { y0 = ys.min()! }
        if x0 == x1 { x0 -= 1; x1 += 1 }
        if y0 == y1 { y1 = y0 + 1 }
        let pw = width - left - right, ph = height - top - bottom
        func px(_ v: Double) -> Double { left + (v - x0) / (x1 - x0) * pw }
        func py(_ v: Double) -> Double { top + ph - ((logY ? log10(v) : v) - y0) / (y1 - y0) * ph }
        func fmt(_ v: Double) -> String { String(format: "%.1f", v) }
        func label(_ v: Double) -> String {
            let a = abs(v)
            if a >= 1e12 { return String(format: "%.3gT", v / 1e12) }
            if a >= 1e9 { return String(format: "%.3gG", v / 1e9) }
            if a >= 1e6 { return String(format: "%.3gM", v / 1e6) }
            if a >= 1e3 { return String(format: "%.3gk", v / 1e3) }
            return String(format: "%.3g", v)
        }
        var out = ["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">",
                   "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
                   "<text x=\"\(fmt(left))\" y=\"24\" font-size=\"15\">\(escape(title ?? "\(y) by \(x)"))</text>"]
        for k in 0...5 {
            let v = y0 + (y1 - y0) * Double(k) / 5, yy = top + ph - ph * Double(k) / 5
            out.append("<line x1=\"\(fmt(left))\" y1=\"\(fmt(yy))\" x2=\"\(fmt(left + pw))\" y2=\"\(fmt(yy))\" stroke=\"#e5e5e5\"/>")
            out.append("<text x=\"\(fmt(left - 6))\" y=\"\(fmt(yy + 4))\" text-anchor=\"end\">\(label(logY ? pow(10, v) : v))</text>")
            let xv = x0 + (x1 - x0) * Double(k) / 5
            out.append("<text x=\"\(fmt(px(xv)))\" y=\"\(fmt(top + ph + 18))\" text-anchor=\"middle\">\(label(xv))</text>")
        }
        out.append("<rect x=\"\(fmt(left))\" y=\"\(fmt(top))\" width=\"\(fmt(pw))\" height=\"\(fmt(ph))\" fill=\"none\" stroke=\"#444\"/>")
        out.append("<text x=\"\(fmt(left + pw / 2))\" y=\"\(fmt(height - 10))\" text-anchor=\"middle\">\(escape(x))</text>")
        out.append("<text transform=\"translate(16 \(fmt(top + ph / 2))) rotate(-90)\" text-anchor=\"middle\">\(escape(y))\(logY ? " (log)" : "")</text>")
        for (i, line) in lines.enumerated() {
            let color = Self.palette[i % Self.palette.count]
            let dash = Self.bounds.contains(line.name) ? " stroke-dasharray=\"6 4\"" : ""
            let points = line.points.map { "\(fmt(px($0.0))),\(fmt(py($0.1)))" }.joined(separator: " ")
            out.append("<g class=\"series\" data-name=\"\(escape(line.name))\"><polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dash) points=\"\(points)\"/>")
            for p in line.points { out.append("<circle cx=\"\(fmt(px(p.0)))\" cy=\"\(fmt(py(p.1)))\" r=\"3\" fill=\"\(color)\"/>") }
            out.append("</g>")
            let ly = top + 14 + Double(i) * 18
            out.append("<line x1=\"\(fmt(left + pw + 12))\" y1=\"\(fmt(ly - 4))\" x2=\"\(fmt(left + pw + 36))\" y2=\"\(fmt(ly - 4))\" stroke=\"\(color)\" stroke-width=\"2\"\(dash)/>")
            out.append("<text x=\"\(fmt(left + pw + 42))\" y=\"\(fmt(ly))\">\(escape(line.name))</text>")
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }
}

/// XML/HTML text escaping.
func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}

/// One self-contained HTML page: plots of the main metrics against an axis, and the whole table. A served run's
/// report (its serving columns filled) also plots throughput, tail latency and goodput.
public enum HTMLReport {
    /// The axes a report may be plotted against, in order of preference (`axis(for:)`).
    public static let axes = ["budget_experts", "batch", "arrival_rate", "max_tokens", "prefill_chunk", "lookahead",
                              "host_capacity_bytes", "gpus"]

    /// The first of `axes` whose values vary in `table` (a sweep's axis), else `budget_experts`.
    public static func axis(for table: ReportTable) -> String {
        axes.first { name in
            guard let i = table.header.firstIndex(of: name) else { return false }
            return Set(table.rows.map { $0[i] }.filter { Double($0) != nil }).count > 1
        } ?? "budget_experts"
    }

    public static func html(_ table: ReportTable, source: String, x: String) throws -> String {
        var parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\"/><title>moesim report: \(escape(source))</title>",
                     "<style>body{font-family:sans-serif;margin:24px}table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}</style>",
                     "</head><body>", "<h1>moesim report</h1>", "<p>From <code>\(escape(source))</code>: \(table.rows.count) rows.</p>"]
        var metrics = [("tokens_per_s", false), ("hit_rate", false), ("bytes_h2d", false), ("tpot_mean_s", true)]
        if hasNumbers(table, "requests") {  // served runs
            metrics += [("output_tokens_per_s", true), ("request_tpot_p99_s", true), ("request_ttft_p99_s", true),
                        ("goodput_rps", false), ("peak_kv_bytes", false)].filter { hasNumbers(table, $0.0) }
        }
        if hasNumbers(table, "ssd_reads") {  // three tiers (docs/tiers.md)
            metrics += [("host_hit_rate", false), ("bytes_ssd", false), ("ssd_busy_fraction", false)]
        }
        for (metric, log) in metrics where table.header.contains(metric) {
            parts.append("<figure>" + (try LinePlot(table: table, x: x, y: metric, logY: log).svg()) + "</figure>")
        }
        if hasNumbers(table, "load_imbalance_mean") {  // several GPUs (docs/multigpu.md): a line per expert map
            for (metric, log) in [("tokens_per_s", true), ("load_imbalance_mean", false), ("cross_gpu_share", false)] {
                let plot = LinePlot(table: table, x: x, y: metric, series: "expert_map", logY: log,
                                    title: "\(metric) by expert map")
                parts.append("<figure>" + (try plot.svg()) + "</figure>")
            }
        }
        parts.append("<table><thead><tr>" + table.header.map { "<th>\(escape($0))</th>" }.joined() + "</tr></thead><tbody>")
        for row in table.rows { parts.append("<tr>" + row.map { "<td>\(escape($0))</td>" }.joined() + "</tr>") }
        parts.append("</tbody></table></body></html>")
        return parts.joined(separator: "\n") + "\n"
    }

    /// Whether column `name` holds a positive number in some row (serving columns are empty for sequential runs).
    static func hasNumbers(_ table: ReportTable, _ name: String) -> Bool {
        guard let i = table.header.firstIndex(of: name) else { return false }
        return table.rows.contains { Double($0[i]).map { $0 > 0 } ?? false }
    }
}
