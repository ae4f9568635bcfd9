#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CZlib
import Foundation

/// A stream of bytes read in chunks: a plain file, or a gzip file inflated on the fly.
///
/// Traces larger than memory stream through a fixed-size buffer; nothing holds the whole file.
protocol ByteSource: AnyObject {
    /// Fills `buffer` with up to `buffer.count` bytes; returns 0 at the end of the stream.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

/// Opens `path` as plain bytes, or inflates it when its name ends in `.gz`.
func openByteSource(_ path: String) throws -> ByteSource {
    guard let file = fopen(path, "rb") else {
        throw TraceError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
    }
    return try openByteSource(file, path: path)
}

/// Wraps an open file (which the source closes) by `path`'s ending. A gzip file of more than a few megabytes is
/// inflated on a second thread while the caller parses (`BackgroundSource`).
func openByteSource(_ file: UnsafeMutablePointer<FILE>, path: String) throws -> ByteSource {
    guard path.hasSuffix(".gz") else { return PlainFileSource(file: file) }
    var info = stat()
    let large = fstat(fileno(file), &info) == 0 && Int(info.st_size) > BackgroundSource.worthwhileBytes
    let gzip = try GzipFileSource(file: file, path: path)
    guard large, let background = BackgroundSource(gzip) else { return gzip }
    return background
}

final class PlainFileSource: ByteSource {
    private let file: UnsafeMutablePointer<FILE>
    init(file: UnsafeMutablePointer<FILE>) { self.file = file }
    deinit { fclose(file) }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        fread(buffer.baseAddress, 1, buffer.count, file)
    }
}

/// Inflates gzip (and concatenated gzip members) with zlib; a stream that stops early is `truncatedGzip`.
final class GzipFileSource: ByteSource {
    private let file: UnsafeMutablePointer<FILE>
    private let path: String
    private var stream = z_stream()
    private var input: UnsafeMutablePointer<UInt8>
    private let inputCapacity = 1 << 18
    private var finished = false
    private var inMember = false

    init(file: UnsafeMutablePointer<FILE>, path: String) throws {
        self.file = file
        self.path = path
        input = .allocate(capacity: inputCapacity)
        let status = inflateInit2_(&stream, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        if status != Z_OK { throw TraceError.corruptGzip(path: path, reason: "inflateInit failed (\(status))") }
    }

    deinit {
        inflateEnd(&stream)
        input.deallocate()
        fclose(file)
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        if finished { return 0 }
        let out = buffer.bindMemory(to: UInt8.self)
        stream.next_out = out.baseAddress
        stream.avail_out = UInt32(out.count)
        while stream.avail_out == UInt32(out.count) {
            if stream.avail_in == 0 {
                let n = fread(input, 1, inputCapacity, file)
                if n == 0 {
                    if inMember { throw TraceError.truncatedGzip(path: path) }
                    finished = true
                    break
                }
                stream.next_in = input
                stream.avail_in = UInt32(n)
            }
            inMember = true
            let status = inflate(&stream, Z_NO_FLUSH)
            switch status {
            case Z_STREAM_END:
                inMember = false
                inflateReset(&stream)  // a further gzip member may follow
            case Z_OK, Z_BUF_ERROR:
                break
            default:
                let reason = stream.msg.map { String(cString: $0) } ?? "zlib status \(status)"
                throw TraceError.corruptGzip(path: path, reason: reason)
            }
        }
        return out.count - Int(stream.avail_out)
    }
}

/// Reads another source ahead on a second thread, into a ring of chunks, and hands the bytes out in order: what
/// one thread parses, the other inflates. An error of the inner source is thrown where the bytes before it end,
/// as reading it directly would.
final class BackgroundSource: ByteSource, @unchecked Sendable {
    /// Below this compressed size, a thread costs more than it saves.
    static let worthwhileBytes = 4 << 20
    private static let chunkBytes = 1 << 20, chunkCount = 4

    private let inner: ByteSource
    private let chunks: [UnsafeMutableRawBufferPointer]
    private var filled: [Int]  // bytes in each chunk; valid while the chunk is ready
    private var ready = 0, produced = 0  // chunks handed to the reader, and filled by the worker, in all
    private var offset = 0  // read so far from the reader's current chunk
    private var failure: Error?
    private var ended = false, stopping = false, workerDone = false
    private let condition = NSCondition()

    /// nil when no thread could be started: the caller reads `inner` itself.
    init?(_ inner: ByteSource) {
        self.inner = inner
        chunks = (0..<Self.chunkCount).map { _ in .allocate(byteCount: Self.chunkBytes, alignment: 16) }
        filled = Array(repeating: 0, count: Self.chunkCount)
        // Unowned: the worker must not keep a source its reader dropped (`deinit` stops it).
        guard startWorkerThread({ [unowned(unsafe) self] in self.work() }) else {
            workerDone = true  // for `deinit`, which runs for a failed init too
            return nil
        }
    }

    deinit {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !workerDone { condition.wait() }
        condition.unlock()
        for chunk in chunks { chunk.deallocate() }
    }

    /// The worker: fills free chunks in turn until the inner source ends or fails, or the reader goes away.
    private func work() {
        while true {
            condition.lock()
            while produced - ready == Self.chunkCount && !stopping { condition.wait() }
            let stop = stopping, slot = produced % Self.chunkCount
            condition.unlock()
            if stop { break }
            var count = 0, error: Error?
            do {
                let chunk = chunks[slot]
                while count < chunk.count {
                    let n = try inner.read(into: UnsafeMutableRawBufferPointer(rebasing: chunk[count...]))
                    if n == 0 { break }
                    count += n
                }
            } catch let e { error = e }
            condition.lock()
            filled[slot] = count
            if count > 0 { produced += 1 }
            if error != nil || count < Self.chunkBytes { failure = error; ended = true }
            condition.broadcast()
            let finished = ended
            condition.unlock()
            if finished { break }
        }
        condition.lock()
        workerDone = true
        condition.broadcast()
        condition.unlock()
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        condition.lock()
        defer { condition.unlock() }
        while ready == produced && !ended { condition.wait() }
        if ready == produced {  // the worker ended and every chunk was read
            if let failure { throw failure }
            return 0
        }
        let slot = ready % Self.chunkCount, available = filled[slot] - offset
        let n = min(available, buffer.count)
        buffer.baseAddress!.copyMemory(from: chunks[slot].baseAddress! + offset, byteCount: n)
        offset += n
        if offset == filled[slot] {
            offset = 0
            ready += 1
            condition.broadcast()
        }
        return n
    }
}

/// Splits a byte source into lines without copying them: each line is handed out as a buffer view.
final class LineReader {
    private let source: ByteSource
    private var buffer: UnsafeMutableRawBufferPointer
    private var start = 0, end = 0
    private var atEnd = false
    private(set) var lineNumber = 0

    init(source: ByteSource, capacity: Int = 1 << 20) {
        self.source = source
        buffer = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit { buffer.deallocate() }

    /// The next line without its newline (a final line without one counts), or nil at the end.
    /// The view is valid until the next call.
    func nextLine() throws -> UnsafeBufferPointer<UInt8>? {
        while true {
            if start < end, let newline = memchr(buffer.baseAddress! + start, 0x0A, end - start) {
                let lineEnd = buffer.baseAddress!.distance(to: UnsafeMutableRawPointer(newline))
                let line = UnsafeBufferPointer(start: buffer.baseAddress!.assumingMemoryBound(to: UInt8.self) + start,
                                               count: lineEnd - start)
                start = lineEnd + 1
                lineNumber += 1
                return trimCR(line)
            }
            if atEnd {
                guard start < end else { return nil }
                let line = UnsafeBufferPointer(start: buffer.baseAddress!.assumingMemoryBound(to: UInt8.self) + start,
                                               count: end - start)
                start = end
                lineNumber += 1
                return trimCR(line)
            }
            try refill()
        }
    }

    private func refill() throws {
        if start > 0 {
            let pending = end - start
            if pending > 0 { memmove(buffer.baseAddress!, buffer.baseAddress! + start, pending) }
            start = 0
            end = pending
        }
        if end == buffer.count {  // one line longer than the buffer: grow
            let bigger = UnsafeMutableRawBufferPointer.allocate(byteCount: buffer.count * 2, alignment: 16)
            bigger.copyMemory(from: UnsafeRawBufferPointer(buffer))
            buffer.deallocate()
            buffer = bigger
        }
        let n = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[end...]))
        if n == 0 { atEnd = true } else { end += n }
    }

    private func trimCR(_ line: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
        if let last = line.last, last == 0x0D { return UnsafeBufferPointer(rebasing: line.dropLast()) }
        return line
    }
}
