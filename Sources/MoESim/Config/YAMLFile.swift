import Foundation
import Yams

/// What every YAML file of moesim shares: the top-level keys checked against a list, errors with file and line,
/// paths relative to the file.
struct YAMLFile {
    let path: String

    /// The file's text.
    func text() throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError.file(path: path, line: nil, message: "cannot read this YAML file")
        }
        guard data.count <= Limits.yamlBytes else {
            throw ConfigError.file(path: path, line: nil, message: "\(data.count) bytes; a config or profile file has at most \(Limits.yamlBytes)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError.file(path: path, line: nil, message: "not UTF-8 text")
        }
        return text
    }

    /// The file's YAML node tree (nil for an empty document), checked for what YAML itself allows but moesim does
    /// not: more than `Limits.yamlBytes`, nesting deeper than `Limits.yamlDepth` (checked before parsing, since the
    /// parser recurses once per level), more than `Limits.yamlNodes` nodes with aliases expanded, and a key repeated
    /// in one mapping (YAML 1.2 forbids it; Yams would keep both).
    func compose(_ text: String) throws -> Node? {
        if text.utf8.count > Limits.yamlBytes {
            throw ConfigError.file(path: path, line: nil, message: "\(text.utf8.count) bytes; a config or profile file has at most \(Limits.yamlBytes)")
        }
        let nesting = YAMLNesting.deepest(in: text)
        if nesting.depth > Limits.yamlDepth {
            throw ConfigError.file(path: path, line: nesting.line,
                                   message: "nested deeper than \(Limits.yamlDepth) levels; moesim's files need a handful")
        }
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw ConfigError.file(path: path, line: nil, message: "not valid YAML: \(error)")
        }
        if let root {
            var nodes = 0
            try checkKeys(root, nodes: &nodes)
        }
        return root
    }

    /// Refuses a repeated key in any mapping, and more than `Limits.yamlNodes` nodes.
    private func checkKeys(_ node: Node, nodes: inout Int) throws {
        nodes += 1
        if nodes > Limits.yamlNodes {
            throw ConfigError.file(path: path, line: node.mark?.line, message: "more than \(Limits.yamlNodes) YAML nodes (aliases expanded)")
        }
        switch node {
        case .scalar: return
        case let .sequence(items): for item in items { try checkKeys(item, nodes: &nodes) }
        case let .mapping(pairs):
            var seen: [Node: Int] = [:]
            for (key, value) in pairs {
                if let first = seen[key] {
                    throw fail(key, "duplicate key '\(key.scalar?.string ?? "\(key)")' (first at line \(first)): each key once")
                }
                seen[key] = key.mark?.line ?? 0
                try checkKeys(key, nodes: &nodes)
                try checkKeys(value, nodes: &nodes)
            }
        }
    }

    /// The top-level mapping by key; an unknown key is an error with the closest known one.
    func topLevel(_ text: String, keys: [String]) throws -> [String: Node] {
        guard let root = try compose(text)?.mapping else {
            throw ConfigError.file(path: path, line: 1, message: "expected a mapping of keys (\(keys.joined(separator: ", ")))")
        }
        var values: [String: Node] = [:]
        for (keyNode, value) in root {
            let key = try scalar(keyNode, "key")
            guard keys.contains(key) else {
                let hint = closestMatch(key, among: keys).map { " Did you mean '\($0)'?" } ?? ""
                throw fail(keyNode, "unknown key '\(key)'.\(hint) Known keys: \(keys.joined(separator: ", "))")
            }
            values[key] = value
        }
        return values
    }

    func resolve(_ p: String) -> String {
        let folder = FilePath.parent(of: path)
        return normalizePath(p.hasPrefix("/") || folder.isEmpty ? p : folder + "/" + p)
    }

    func fail(_ n: Node, _ message: String) -> ConfigError { .file(path: path, line: n.mark?.line, message: message) }

    func scalar(_ n: Node, _ key: String) throws -> String {
        guard let s = n.scalar?.string else { throw fail(n, "'\(key)' must be a single value") }
        return s
    }

    /// Runs `body`, turning a `ConfigError` without a place into one at `n`'s line.
    func wrap<T>(_ n: Node, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ConfigError {
            if case .file = e { throw e }
            throw fail(n, e.description)
        }
    }

    /// The settings a section's mapping sets, as keys (`precision.threshold`) and as the file names them (with the
    /// line), for `SettingScope`.
    func settings(_ n: Node?, section: String) -> [(key: String, named: String)] {
        guard let mapping = n?.mapping else { return [] }
        return mapping.compactMap { keyNode, _ in
            keyNode.scalar.map { ("\(section).\($0.string)", "\(section).\($0.string) (\(path):\((keyNode.mark?.line).map(String.init) ?? "?"))") }
        }
    }

    /// An options section (`prefetch:`, `precision:`), checked.
    func options<Section: OptionSection>(_ n: Node) throws -> Section {
        guard let mapping = n.mapping else {
            throw fail(n, "\(Section.section) must be a mapping of \(Section.keys.joined(separator: ", "))")
        }
        var options = Section()
        for (keyNode, value) in mapping {
            do {
                try options.set(try scalar(keyNode, "\(Section.section) key"), to: try scalar(value, "\(Section.section) value"),
                                origin: path)
            } catch let e as ConfigError {
                if case .file = e { throw e }
                throw fail(keyNode, e.description.replacingOccurrences(of: "\(path): ", with: ""))
            }
        }
        do { try options.validate() } catch let e as ConfigError { throw fail(n, e.description) }
        return options
    }
}

/// An upper bound on the nesting depth of a YAML text, found without parsing it (the parser recurses once per level,
/// so a text nested thousands deep would overflow the stack before any check on its tree could run).
///
///     YAMLNesting.deepest(in: "a: [[1], {b: 2}]")   // at least 3, with the line
///
/// Flow nesting is counted by brackets outside quotes and comments; block nesting by the stack of indentation
/// levels and leading `- `/`? ` indicators, each counted as two levels (a sequence may sit in a mapping at the same
/// indentation). It may overestimate, never underestimate, for text that YAML accepts.
enum YAMLNesting {
    static func deepest(in text: String) -> (depth: Int, line: Int) {
        var deepest = (depth: 0, line: 1)
        var indents: [Int] = []
        var flow = 0
        var quote: UInt8? = nil  // inside a quoted scalar, which may span lines
        var block = 0  // the block nesting of the last line that started a node (continuation lines keep it)
        for (number, line) in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let bytes = Array(line)
            var i = 0
            if quote == nil && flow == 0 {
                let indent = bytes.prefix { $0 == UInt8(ascii: " ") }.count
                let rest = bytes[indent...]
                if rest.isEmpty || rest.first == UInt8(ascii: "#") || rest.first == UInt8(ascii: "\r") { continue }
                while let last = indents.last, last > indent { indents.removeLast() }
                if indents.last != indent { indents.append(indent) }
                i = indent
                var indicators = 0
                while i + 1 < bytes.count, bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "?"), bytes[i + 1] == UInt8(ascii: " ") {
                    indicators += 1
                    i += 2
                    while i < bytes.count && bytes[i] == UInt8(ascii: " ") { i += 1 }
                }
                block = 2 * (indents.count + indicators) + 1
            }
            var lineFlow = flow
            var previous: UInt8 = UInt8(ascii: " ")  // the last non-space byte outside quotes
            while i < bytes.count {
                let b = bytes[i]
                if let q = quote {
                    if q == UInt8(ascii: "\"") && b == UInt8(ascii: "\\") { i += 2; continue }
                    if b == q {
                        if q == UInt8(ascii: "'") && i + 1 < bytes.count && bytes[i + 1] == q { i += 2; continue }
                        quote = nil
                        previous = b
                    }
                    i += 1
                    continue
                }
                switch b {
                case UInt8(ascii: "#") where i == 0 || bytes[i - 1] == UInt8(ascii: " ") || bytes[i - 1] == UInt8(ascii: "\t"):
                    i = bytes.count
                    continue
                case UInt8(ascii: "\""), UInt8(ascii: "'"):
                    // A quote opens a scalar only where a scalar may start; inside a plain scalar (it's) it is text.
                    if [UInt8(ascii: " "), UInt8(ascii: "["), UInt8(ascii: "{"), UInt8(ascii: ","), UInt8(ascii: ":"),
                        UInt8(ascii: "-"), UInt8(ascii: "?")].contains(previous) { quote = b }
                case UInt8(ascii: "["), UInt8(ascii: "{"):
                    flow += 1
                    lineFlow = max(lineFlow, flow)
                case UInt8(ascii: "]"), UInt8(ascii: "}"):
                    flow = max(0, flow - 1)
                default: break
                }
                if b != UInt8(ascii: " ") && b != UInt8(ascii: "\t") { previous = b }
                i += 1
            }
            if block + lineFlow > deepest.depth { deepest = (block + lineFlow, number + 1) }
        }
        return deepest
    }
}
