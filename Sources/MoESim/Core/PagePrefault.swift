import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Faults in freshly reserved memory on a second thread, ahead of the thread that fills it front to back: a step
/// plan's columns are tens of megabytes written once, and taking a page fault per 4 KiB on the filling thread cost
/// about a third of building the plan (docs/performance.md). The worker asks the kernel to populate the pages
/// (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14), a megabyte of each region in turn; that never changes a byte
/// already written, so the two threads need no coordination. Where the kernel lacks it, the worker stops at its
/// first refusal and the filling thread faults as before.
final class PagePrefault: @unchecked Sendable {
    /// Below this in all, a thread costs more than it saves.
    static let worthwhileBytes = 16 << 20
    private static let stepBytes = 1 << 20, pageBytes = 4096
    private static let populateWrite: Int32 = 23  // MADV_POPULATE_WRITE, not in every Glibc's headers

    private let condition = NSCondition()
    private var finished = false
    /// The whole pages of each region: first and end addresses.
    private let pages: [(Int, Int)]

    /// Starts on `regions` (each a start and a byte count); nil when they are too small to be worth a thread.
    init?(_ regions: [(start: UnsafeMutableRawPointer, bytes: Int)]) {
        #if os(Linux)
        // Whole pages only: the first and last partial pages are left to fault as usual.
        pages = regions.compactMap { r -> (Int, Int)? in
            let first = (Int(bitPattern: r.start) + Self.pageBytes - 1) & ~(Self.pageBytes - 1)
            let end = (Int(bitPattern: r.start) + r.bytes) & ~(Self.pageBytes - 1)
            return end > first ? (first, end) : nil
        }
        guard pages.reduce(0, { $0 + $1.1 - $1.0 }) >= Self.worthwhileBytes else { return nil }
        guard startWorkerThread({ self.populate() }) else { return nil }  // the worker holds this object while it runs
        #else
        return nil
        #endif
    }

    /// Returns once the worker is done (the memory may then be freed or moved). The worker holds this object
    /// while it runs; the builder waits before it lets its columns go.
    func wait() {
        condition.lock()
        while !finished { condition.wait() }
        condition.unlock()
    }

    /// A step of each region in turn, so that regions filled side by side are populated side by side.
    private func populate() {
        #if os(Linux)
        let regions = pages
        var next = regions.map(\.0)
        populating: while next.indices.contains(where: { next[$0] < regions[$0].1 }) {
            for (i, (_, end)) in regions.enumerated() where next[i] < end {
                let bytes = min(Self.stepBytes, end - next[i])
                // Refused: not supported here (or the memory went away); the filling thread faults as before.
                guard madvise(UnsafeMutableRawPointer(bitPattern: next[i]), bytes, Self.populateWrite) == 0 else { break populating }
                next[i] += bytes
            }
        }
        #endif
        condition.lock()
        finished = true
        condition.broadcast()
        condition.unlock()
    }
}
