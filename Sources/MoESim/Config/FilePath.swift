/// Path arithmetic on plain strings, by '/' alone. (Foundation's `NSString.deletingLastPathComponent` traps on Linux
/// for a one-character component such as `o` in `o/r.csv`: every output under such a folder crashed.)
///
///     FilePath.parent(of: "o/r.csv")   // "o"
///     FilePath.parent(of: "r.csv")     // "" (the current folder)
///     FilePath.name(of: "/a/b.csv")    // "b.csv"
public enum FilePath {
    /// The folder holding `path`: "" for a bare name, "/" for a name at the root; trailing slashes ignored.
    public static func parent(of path: String) -> String {
        let trimmed = trimmingTrailingSlashes(path)
        guard let slash = trimmed.lastIndex(of: "/") else { return "" }
        let folder = trimmingTrailingSlashes(String(trimmed[..<slash]))
        return folder.isEmpty ? "/" : folder
    }

    /// The last component of `path` (trailing slashes ignored).
    public static func name(of path: String) -> String {
        let trimmed = trimmingTrailingSlashes(path)
        guard let slash = trimmed.lastIndex(of: "/") else { return trimmed }
        return String(trimmed[trimmed.index(after: slash)...])
    }

    private static func trimmingTrailingSlashes(_ path: String) -> String {
        var s = Substring(path)
        while s.count > 1 && s.hasSuffix("/") { s = s.dropLast() }
        return String(s)
    }
}
