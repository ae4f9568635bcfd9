import Foundation

/// The first line of a routing trace: what model produced it and the shape of every token line.
///
///     {"format":"moe-routing-trace","version":1,"model":"mixtral-8x7b","layers":32,"experts":8,"top_k":2}
///
/// Invariant: `layers`, `experts`, `topK` are positive and `topK <= experts`.
public struct TraceHeader: Equatable, Sendable {
    public static let formatName = "moe-routing-trace"
    public static let version = 1

    public var model: String
    public var layers: Int
    public var experts: Int
    public var topK: Int
    /// Free-text provenance fields, kept for `trace stats` and written back by the writer.
    public var source: String?
    public var notes: String?
    /// Generator settings of a synthetic trace, as compact JSON text (written, not interpreted).
    public var generator: String?

    public init(model: String, layers: Int, experts: Int, topK: Int, source: String? = nil, notes: String? = nil,
                generator: String? = nil) {
        self.model = model; self.layers = layers; self.experts = experts; self.topK = topK
        self.source = source; self.notes = notes; self.generator = generator
    }

    /// Parses and checks a header line.
    /// - Throws: `TraceError.malformed` naming line 1 and the field.
    static func parse(_ line: UnsafeBufferPointer<UInt8>, path: String) throws -> TraceHeader {
        func fail(_ field: String?, _ message: String) -> TraceError {
            .malformed(path: path, line: 1, field: field, message: message)
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
            throw fail(nil, "the header is not a JSON object")
        }
        guard object["format"] as? String == formatName else {
            throw fail("format", "expected \"\(formatName)\"; is this a routing trace?")
        }
        // A JSON number that is a whole number (JSONSerialization reads `true` as an NSNumber that `as? Int` takes for 1).
        func integer(_ value: Any?) -> Int? {
            guard let number = value as? NSNumber, String(cString: number.objCType) != "c" else { return nil }
            return value as? Int
        }
        guard let version = integer(object["version"]), version == TraceHeader.version else {
            throw fail("version", "expected \(TraceHeader.version), found \(object["version"].map { "\($0)" } ?? "nothing")")
        }
        func count(_ key: String, _ range: ClosedRange<Int>) throws -> Int {
            guard let n = integer(object[key]) else { throw fail(key, "missing or not an integer") }
            if !range.contains(n) { throw fail(key, "\(n) is outside \(Limits.describe(range)) (docs/trace-format.md, Limits)") }
            return n
        }
        let header = TraceHeader(model: object["model"] as? String ?? "unknown", layers: try count("layers", Limits.layers),
                                 experts: try count("experts", Limits.experts), topK: try count("top_k", Limits.topK),
                                 source: object["source"] as? String, notes: object["notes"] as? String)
        if let problem = header.shapeProblem { throw fail(problem.field, problem.message) }
        return header
    }

    /// What is wrong with a shape whose fields are each in range but not together, or nil.
    var shapeProblem: (field: String, message: String)? {
        if topK > experts { return ("top_k", "\(topK) exceeds experts (\(experts))") }
        if layers * experts > Limits.flatExperts {
            return ("experts", "layers × experts = \(layers * experts) exceeds \(Limits.flatExperts) (docs/trace-format.md, Limits)")
        }
        if layers * topK > Limits.idsPerToken {
            return ("top_k", "layers × top_k = \(layers * topK) exceeds \(Limits.idsPerToken) ids per token (docs/trace-format.md, Limits)")
        }
        return nil
    }

    /// The header as one JSON line (keys in a fixed order, so output is byte-stable).
    func jsonLine() -> String {
        var parts = ["\"format\":\"\(TraceHeader.formatName)\"", "\"version\":\(TraceHeader.version)",
                     "\"model\":\(jsonString(model))", "\"layers\":\(layers)", "\"experts\":\(experts)", "\"top_k\":\(topK)"]
        if let source { parts.append("\"source\":\(jsonString(source))") }
        if let notes { parts.append("\"notes\":\(jsonString(notes))") }
        if let generator { parts.append("\"generator\":\(generator)") }
        return "{" + parts.joined(separator: ",") + "}"
    }
}

/// A JSON string literal with the escapes JSON requires.
func jsonString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}
