import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CZlib

/// A file written atomically: bytes go to a temporary file beside the target, renamed over it on `commit()`.
///
/// A run that fails or is killed leaves the previous file (or none), never a half-written one. Missing folders on
/// the way are created (every command's outputs, alike). Names ending in
/// `.gz` are gzip-compressed. A path that names a stream rather than a file (`/dev/stdout`, a FIFO) is written
/// directly, since a rename would replace the device with a file; write errors are reported either way.
public final class AtomicFileSink {
    public let path: String
    /// The file written: a temporary beside `target`, or `path` itself when it is a stream.
    private let temporaryPath: String
    /// The file that `commit` renames the temporary onto: `path`, or the file it links to.
    private let target: String
    private let direct: Bool
    private let file: UnsafeMutablePointer<FILE>
    private var deflater: UnsafeMutablePointer<z_stream>?
    /// Compresses on a second thread once a compressed file outgrows one chunk (a small one is compressed at commit).
    private var compressor: ChunkCompressor?
    private var deflated: [UInt8] = []
    private var buffer: [UInt8] = []
    private let chunk = 1 << 18
    private var committed = false
    /// Where the next byte goes in the (uncompressed) file: the bytes written and buffered so far, or a seek's target.
    private var position = 0

    public init(path: String) throws {
        self.path = path
        direct = try OutputPath.kind(path) == .stream
        // A link is followed: the file it names is replaced, and the link kept.
        target = direct ? path : try OutputPath.followingLink(path)
        if !direct { try CSVFile.ensureDirectory(for: target) }
        temporaryPath = direct ? path : target + ".tmp-\(getpid())"
        guard let f = fopen(temporaryPath, "wb") else {
            throw ConfigError.file(path: path, line: nil, message: "cannot write: \(String(cString: strerror(errno)))")
        }
        file = f
        if path.hasSuffix(".gz") {
            let z = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            z.initialize(to: z_stream())
            // Level 3, as the Python companion writes: on routing text level 6 is about three times as slow for a
            // file about 11% smaller (docs/performance.md).
            deflateInit2_(z, 3, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
            deflater = z
        }
        buffer.reserveCapacity(chunk * 2)
    }

    deinit {
        compressor?.stop()  // before the file and the stream it writes go
        if !committed {
            fclose(file)
            if !direct { unlink(temporaryPath) }
        }
        if let z = deflater { deflateEnd(z); z.deallocate() }
    }

    /// Writes `text` as the whole file at `path` (creating its folder), atomically.
    public static func write(_ text: String, to path: String) throws {
        let sink = try AtomicFileSink(path: path)
        try sink.write(text)
        try sink.commit()
    }

    public func write(_ text: String) throws {
        buffer.append(contentsOf: text.utf8)
        position += text.utf8.count
        if buffer.count >= chunk { try flush(final: false) }
    }

    public func write(bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Writes `bytes` at the file's byte `offset` (nil: after the last byte written). A write that does not continue
    /// where the last one ended seeks, which a compressed output or a stream cannot: the binary trace writer places
    /// each block's column slices this way.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int? = nil) throws {
        if let offset, offset != position {
            guard deflater == nil, !direct else {
                throw ConfigError.file(path: path, line: nil, message: "cannot be written in parts (a stream or compressed output): write a file")
            }
            try flush(final: false)
            guard fseeko(file, off_t(offset), SEEK_SET) == 0 else {
                throw ConfigError.file(path: path, line: nil, message: "cannot seek: \(String(cString: strerror(errno)))")
            }
            position = offset
        }
        buffer.append(contentsOf: bytes)
        position += bytes.count
        if buffer.count >= chunk { try flush(final: false) }
    }

    /// Flushes, closes and renames the file into place.
    public func commit() throws {
        try flush(final: true)
        committed = true
        let closeFailed = fclose(file) != 0
        if closeFailed || (!direct && rename(temporaryPath, target) != 0) {
            let reason = String(cString: strerror(errno))
            if !direct { unlink(temporaryPath) }
            throw ConfigError.file(path: path, line: nil, message: "cannot write: \(reason)")
        }
    }

    private func flush(final: Bool) throws {
        if deflater != nil {
            if compressor == nil && !final {
                compressor = ChunkCompressor { [unowned(unsafe) self] chunk, final in try self.compress(chunk, final: final) }
            }
            if let compressor { return try compressor.hand(&buffer, final: final) }
            try compress(buffer, final: final)
        } else {
            try put(buffer, count: buffer.count)
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Deflates `input` into the file (the stream's end too where `final`); on the compressor's thread once it runs.
    private func compress(_ input: [UInt8], final: Bool) throws {
        guard let z = deflater else { return }
        if deflated.count != chunk { deflated = [UInt8](repeating: 0, count: chunk) }
        try input.withUnsafeBufferPointer { input in
            z.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
            z.pointee.avail_in = UInt32(input.count)
            repeat {
                let produced = deflated.withUnsafeMutableBufferPointer { o -> Int in
                    z.pointee.next_out = o.baseAddress
                    z.pointee.avail_out = UInt32(o.count)
                    deflate(z, final ? Z_FINISH : Z_NO_FLUSH)
                    return o.count - Int(z.pointee.avail_out)
                }
                try put(deflated, count: produced)
            } while z.pointee.avail_out == 0
        }
    }

    private func put(_ bytes: [UInt8], count: Int) throws {
        guard count > 0 else { return }
        if bytes.withUnsafeBufferPointer({ fwrite($0.baseAddress, 1, count, file) }) != count {
            throw ConfigError.file(path: path, line: nil, message: "write failed: \(String(cString: strerror(errno)))")
        }
    }
}

/// Runs `compress` on a second thread over the chunks handed to it, in order, while the caller fills the next: at
/// most `depth` wait. The first error it meets stops it and comes back from the next `hand`; the final chunk's
/// `hand` returns once every chunk is compressed.
final class ChunkCompressor: @unchecked Sendable {
    private static let depth = 3
    private let compress: ([UInt8], Bool) throws -> Void
    private let condition = NSCondition()
    private var waiting: [(chunk: [UInt8], final: Bool)] = []
    /// Emptied chunks, handed back so that their storage is used again.
    private var spare: [[UInt8]] = []
    private var failure: Error?
    private var stopping = false, workerDone = false

    /// nil when no thread could be started: the caller compresses in line.
    init?(_ compress: @escaping ([UInt8], Bool) throws -> Void) {
        self.compress = compress
        guard startWorkerThread({ [unowned(unsafe) self] in self.work() }) else { return nil }
    }

    /// Hands `chunk` over (it comes back empty, with spare storage); with `final`, waits until all are compressed.
    func hand(_ chunk: inout [UInt8], final: Bool) throws {
        condition.lock()
        defer { condition.unlock() }
        while waiting.count >= Self.depth && failure == nil && !workerDone { condition.wait() }
        if let failure { throw failure }
        waiting.append((chunk, final))
        chunk = spare.popLast() ?? []
        condition.broadcast()
        guard final else { return }
        while !workerDone { condition.wait() }
        if let failure { throw failure }
    }

    /// Stops the worker after the chunk it is compressing (a sink dropped without its final chunk).
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !workerDone { condition.wait() }
        condition.unlock()
    }

    private func work() {
        condition.lock()
        while true {
            while waiting.isEmpty && !stopping { condition.wait() }
            if stopping { break }
            var (chunk, final) = waiting.removeFirst()
            condition.unlock()
            var error: Error?
            do { try compress(chunk, final) } catch let e { error = e }
            chunk.removeAll(keepingCapacity: true)
            condition.lock()
            spare.append(chunk)
            failure = error
            condition.broadcast()
            if final || error != nil { break }
        }
        workerDone = true
        condition.broadcast()
        condition.unlock()
    }
}

/// What an output path names, checked before anything is written to it.
public enum OutputPath {
    public enum Kind: Equatable { case absent, regular, stream }

    /// - Throws: `ConfigError.file` when the path is a directory, a socket or a block device.
    public static func kind(_ path: String) throws -> Kind {
        var info = stat()
        guard stat(path, &info) == 0 else { return .absent }
        switch info.st_mode & S_IFMT {
        case S_IFREG: return .regular
        case S_IFCHR, S_IFIFO: return .stream
        case S_IFDIR: throw ConfigError.file(path: path, line: nil, message: "is a directory; name a file to write")
        default: throw ConfigError.file(path: path, line: nil, message: "is not a regular file, a character device or a FIFO; name a file to write")
        }
    }

    /// `path`, or when it is a symbolic link, the file it leads to (links followed to the end), so that writing
    /// replaces that file and keeps the link, as writing through the link would.
    /// - Throws: `ConfigError.file` for a link that leads nowhere.
    public static func followingLink(_ path: String) throws -> String {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFLNK else { return path }
        guard let real = realpath(path, nil) else {
            throw ConfigError.file(path: path, line: nil, message: "is a link to a file that does not exist (\(String(cString: strerror(errno)))): name the file itself")
        }
        defer { free(real) }
        return String(cString: real)
    }

    /// Checks, before a long run, that `path` can be written: what it names, and that the nearest folder that
    /// exists on its way is writable (missing folders are created on writing).
    /// - Throws: `ConfigError.file` saying why not.
    public static func checkWritable(_ path: String) throws {
        if try kind(path) == .stream { return }
        var folder = FilePath.parent(of: try followingLink(path))
        while !folder.isEmpty && folder != "/" && !FileManager.default.fileExists(atPath: folder) {
            folder = FilePath.parent(of: folder)
        }
        let checked = folder.isEmpty ? "." : folder
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: checked, isDirectory: &isFolder), isFolder.boolValue else {
            throw ConfigError.file(path: path, line: nil, message: "cannot write: \(checked) is not a folder")
        }
        guard access(checked, W_OK) == 0 else {
            throw ConfigError.file(path: path, line: nil, message: "cannot write: \(String(cString: strerror(errno))) (\(checked))")
        }
    }
}

/// The files a command reads and writes, checked together before it runs: every output can be written, and none
/// names an input or another output (the same file after resolving links), so no run overwrites what a user wrote.
///
///     var files = FileRoles()
///     files.input("the trace", trace)
///     files.output("--timeline", timeline)
///     try files.check()
///
/// Two outputs may name the same character device or FIFO (`/dev/stdout`): a stream loses nothing.
public struct FileRoles {
    private var inputs: [(what: String, path: String)] = []
    private var outputs: [(what: String, path: String)] = []

    public init() {}

    /// A file the command reads (nil, or a name that is not a file, such as a preset's, is ignored).
    public mutating func input(_ what: String, _ path: String?) {
        guard let path, FileManager.default.fileExists(atPath: path) else { return }
        inputs.append((what, path))
    }

    /// A file the command writes (nil: not asked for).
    public mutating func output(_ what: String, _ path: String?) {
        guard let path else { return }
        outputs.append((what, path))
    }

    /// Checks a command's `inputs` and `outputs` (what each is, and its path; nil: not given) as `check()` does.
    public static func check(inputs: [(String, String?)], outputs: [(String, String?)]) throws {
        var files = FileRoles()
        for (what, path) in inputs { files.input(what, path) }
        for (what, path) in outputs { files.output(what, path) }
        try files.check()
    }

    /// - Throws: `ConfigError.file` naming both files when an output names an input or another output, or why an
    ///   output cannot be written.
    public func check() throws {
        for (_, path) in outputs { try OutputPath.checkWritable(path) }
        for (i, out) in outputs.enumerated() {
            for input in inputs where Self.same(out.path, input.path) {
                throw ConfigError.file(path: out.path, line: nil,
                                       message: "\(out.what) names \(input.what) (\(input.path)), which it would overwrite: choose another file")
            }
            for other in outputs[..<i] where Self.same(out.path, other.path) && (try? OutputPath.kind(out.path)) != .stream {
                throw ConfigError.file(path: out.path, line: nil,
                                       message: "\(out.what) and \(other.what) name the same file (\(other.path)): each output needs its own")
            }
        }
    }

    /// Whether two paths name one file: the same device and inode when both exist, else the same resolved path.
    static func same(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        if stat(a, &sa) == 0 && stat(b, &sb) == 0 { return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino }
        return resolved(a) == resolved(b)
    }

    /// `path` made absolute, its folder's links resolved where the folder exists, `.` and `..` removed.
    static func resolved(_ path: String) -> String {
        let folder = FilePath.parent(of: path), name = FilePath.name(of: path)
        var base = folder.isEmpty ? "." : folder
        if let real = realpath(base, nil) { base = String(cString: real); free(real) }
        else if !base.hasPrefix("/") { base = FileManager.default.currentDirectoryPath + "/" + base }
        var parts: [Substring] = []
        for part in (base + "/" + name).split(separator: "/") {
            if part == "." || part.isEmpty { continue }
            if part == ".." { if !parts.isEmpty { parts.removeLast() } } else { parts.append(part) }
        }
        return "/" + parts.joined(separator: "/")
    }
}
