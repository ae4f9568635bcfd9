import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs `body` on a new detached thread; false when the system refuses one, so that the caller does the work itself.
/// pthread rather than Foundation's `Thread`, whose start cannot fail visibly: a caller waiting for a worker that
/// never ran would wait for good. Shared by every helper thread of the library (`PagePrefault`, `BackgroundSource`,
/// `ChunkCompressor`).
func startWorkerThread(_ body: @escaping @Sendable () -> Void) -> Bool {
    #if os(Linux)
    final class Work { let body: @Sendable () -> Void; init(_ body: @escaping @Sendable () -> Void) { self.body = body } }
    let work = Unmanaged.passRetained(Work(body)).toOpaque()
    var thread = pthread_t()
    let started = pthread_create(&thread, nil, { context in
        Unmanaged<Work>.fromOpaque(context!).takeRetainedValue().body()
        return nil
    }, work)
    guard started == 0 else {
        Unmanaged<Work>.fromOpaque(work).release()  // the thread's reference, never taken
        return false
    }
    pthread_detach(thread)
    return true
    #else
    let thread = Thread(block: body)
    thread.stackSize = 1 << 20
    thread.start()
    return true
    #endif
}
