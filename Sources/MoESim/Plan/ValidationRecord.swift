/// How far a runtime preset's absolute figures have been from published systems (docs/validation.md), so that a
/// plan says how much its answer can be trusted. The records are written by scripts/validation.py from its own run
/// (`ValidationRecord+Recorded.swift`).
public struct ValidationRecord: Sendable, Equatable {
    public let runtime: String
    /// Published tokens/s figures compared, the lowest and highest ratio moesim / published, and how many within ±30%.
    public let rows: Int
    public let lowest: Double
    public let highest: Double
    public let within30: Int

    /// The record of runtime preset `name` (nil when that preset was not compared with a published system).
    public static func of(runtime name: String) -> ValidationRecord? { recorded.first { $0.runtime == name } }

    /// What a plan says of its runtime's figures.
    public static func note(runtime: RuntimeProfile, presetNames: [String]) -> String {
        if let r = of(runtime: runtime.name) {
            return String(format: "runtime %@: against published systems moesim gave %.2f–%.2f× their tokens/s (%d rows, %d within ±30%%; docs/validation.md): ask for headroom with --margin",
                          runtime.name, r.lowest, r.highest, r.rows, r.within30)
        }
        if !presetNames.contains(runtime.name) {
            return "runtime \(runtime.name): a profile of your own (calibrate-gpu measures one on your GPU); moesim's other presets are compared with published systems in docs/validation.md"
        }
        return "runtime \(runtime.name): not compared with a published system (docs/validation.md); real engines are slower than a roofline: ask for headroom with --margin, or pass a runtime measured with moesim-trace calibrate-gpu"
    }
}
