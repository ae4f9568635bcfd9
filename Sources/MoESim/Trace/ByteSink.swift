#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CZlib

/// A file written atomically: bytes go to a temporary file beside the target, renamed over it on `commit()`.
///
/// A run that fails or is killed leaves the previous file (or none), never a half-written one. Names ending in
/// `.gz` are gzip-compressed.
public final class AtomicFileSink {
    public let path: String
    private let temporaryPath: String
    private let file: UnsafeMutablePointer<FILE>
    private var deflater: UnsafeMutablePointer<z_stream>?
    private var buffer: [UInt8] = []
    private let chunk = 1 << 18
    private var committed = false

    public init(path: String) throws {
        self.path = path
        temporaryPath = path + ".tmp-\(getpid())"
        guard let f = fopen(temporaryPath, "wb") else {
            throw ConfigError.file(path: path, line: nil, message: "cannot write: \(String(cString: strerror(errno)))")
        }
        file = f
        if path.hasSuffix(".gz") {
            let z = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            z.initialize(to: z_stream())
            deflateInit2_(z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
            deflater = z
        }
        buffer.reserveCapacity(chunk * 2)
    }

    deinit {
        if !committed { fclose(file); unlink(temporaryPath) }
        if let z = deflater { deflateEnd(z); z.deallocate() }
    }

    /// Writes `text` as the whole file at `path` (creating its folder), atomically.
    public static func write(_ text: String, to path: String) throws {
        try CSVFile.ensureDirectory(for: path)
        let sink = try AtomicFileSink(path: path)
        try sink.write(text)
        try sink.commit()
    }

    public func write(_ text: String) throws {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= chunk { try flush(final: false) }
    }

    public func write(bytes: [UInt8]) throws {
        buffer.append(contentsOf: bytes)
        if buffer.count >= chunk { try flush(final: false) }
    }

    /// Flushes, closes and renames the file into place.
    public func commit() throws {
        try flush(final: true)
        committed = true
        let closeFailed = fclose(file) != 0
        if closeFailed || rename(temporaryPath, path) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(temporaryPath)
            throw ConfigError.file(path: path, line: nil, message: "cannot write: \(reason)")
        }
    }

    private func flush(final: Bool) throws {
        if let z = deflater {
            var out = [UInt8](repeating: 0, count: chunk)
            try buffer.withUnsafeMutableBufferPointer { input in
                z.pointee.next_in = input.baseAddress
                z.pointee.avail_in = UInt32(input.count)
                repeat {
                    let produced = out.withUnsafeMutableBufferPointer { o -> Int in
                        z.pointee.next_out = o.baseAddress
                        z.pointee.avail_out = UInt32(o.count)
                        deflate(z, final ? Z_FINISH : Z_NO_FLUSH)
                        return o.count - Int(z.pointee.avail_out)
                    }
                    try put(out, count: produced)
                } while z.pointee.avail_out == 0
            }
        } else {
            try put(buffer, count: buffer.count)
        }
        buffer.removeAll(keepingCapacity: true)
    }

    private func put(_ bytes: [UInt8], count: Int) throws {
        guard count > 0 else { return }
        if bytes.withUnsafeBufferPointer({ fwrite($0.baseAddress, 1, count, file) }) != count {
            throw ConfigError.file(path: path, line: nil, message: "write failed: \(String(cString: strerror(errno)))")
        }
    }
}
