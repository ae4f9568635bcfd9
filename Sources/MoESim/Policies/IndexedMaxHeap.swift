/// A binary max-heap of experts keyed by a 64-bit priority, with the position of every expert indexed so that a
/// key can change in O(log n) without leaving a stale entry behind.
///
///     let heap = IndexedMaxHeap(capacity: 8192)
///     heap.set(17, key: 900)        // insert or re-key
///     heap.max                      // (expert 17, key 900)
///     heap.remove(17)
///
/// Invariant: every parent's key is >= its children's; `position[e]` is e's slot, or -1 when absent.
/// A class over raw buffers: Belady updates it on every access of a replay.
final class IndexedMaxHeap {
    private let keys: UnsafeMutablePointer<UInt64>
    private let items: UnsafeMutablePointer<Int32>
    private let position: UnsafeMutablePointer<Int32>
    private(set) var count = 0
    /// Entries lifted out while `maxUnpinned` looks (reused, so no call allocates).
    private var aside: [(expert: Int32, key: UInt64)] = []

    init(capacity: Int) {
        keys = .allocate(capacity: capacity)
        items = .allocate(capacity: capacity)
        position = .allocate(capacity: capacity)
        position.initialize(repeating: -1, count: capacity)
    }

    deinit {
        keys.deallocate()
        items.deallocate()
        position.deallocate()
    }

    func contains(_ e: Int32) -> Bool { position[Int(e)] >= 0 }

    /// The expert with the largest key, and the key.
    var max: (expert: Int32, key: UInt64)? { count > 0 ? (items[0], keys[0]) : nil }

    /// The expert with the largest key that `pinned` does not hold, or nil. Pinned ones (at most a layer's set) are
    /// lifted out while looking, then put back: the eviction victim of the heap-keyed policies.
    func maxUnpinned(_ pinned: PinSet) -> Int32? {
        var found: Int32?
        while let top = max {
            if !pinned.contains(top.expert) { found = top.expert; break }
            aside.append(top)
            remove(top.expert)
        }
        guard !aside.isEmpty else { return found }  // the common case: clearing an empty array still costs a call
        for (e, k) in aside { set(e, key: k) }
        aside.removeAll(keepingCapacity: true)
        return found
    }

    /// Inserts `e` with `key`, or changes its key.
    /// - Complexity: O(log n).
    func set(_ e: Int32, key: UInt64) {
        var slot = Int(position[Int(e)])
        if slot < 0 {
            slot = count
            count += 1
            items[slot] = e
            keys[slot] = key
            position[Int(e)] = Int32(slot)
            siftUp(slot)
        } else {
            let old = keys[slot]
            keys[slot] = key
            if key > old { siftUp(slot) } else { siftDown(slot) }
        }
    }

    /// Removes `e` if present.
    /// - Complexity: O(log n).
    func remove(_ e: Int32) {
        let slot = Int(position[Int(e)])
        guard slot >= 0 else { return }
        position[Int(e)] = -1
        count -= 1
        guard slot != count else { return }
        let movedKey = keys[count]
        items[slot] = items[count]
        keys[slot] = movedKey
        position[Int(items[slot])] = Int32(slot)
        if slot > 0 && movedKey > keys[(slot - 1) / 2] { siftUp(slot) } else { siftDown(slot) }
    }

    private func siftUp(_ start: Int) {
        var slot = start
        let key = keys[slot], item = items[slot]
        while slot > 0 {
            let parent = (slot - 1) / 2
            guard keys[parent] < key else { break }
            keys[slot] = keys[parent]
            items[slot] = items[parent]
            position[Int(items[slot])] = Int32(slot)
            slot = parent
        }
        keys[slot] = key
        items[slot] = item
        position[Int(item)] = Int32(slot)
    }

    private func siftDown(_ start: Int) {
        var slot = start
        let key = keys[slot], item = items[slot]
        while true {
            var child = 2 * slot + 1
            guard child < count else { break }
            if child + 1 < count && keys[child + 1] > keys[child] { child += 1 }
            guard keys[child] > key else { break }
            keys[slot] = keys[child]
            items[slot] = items[child]
            position[Int(items[slot])] = Int32(slot)
            slot = child
        }
        keys[slot] = key
        items[slot] = item
        position[Int(item)] = Int32(slot)
    }
}
