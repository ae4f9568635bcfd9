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
    /// Slots `maxUnpinned` may still take (reused, so no call allocates).
    private var frontier = ExpertList(capacity: 64)

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
        frontier.deallocate()
    }

    func contains(_ e: Int32) -> Bool { position[Int(e)] >= 0 }

    /// The expert with the largest key, and the key.
    var max: (expert: Int32, key: UInt64)? { count > 0 ? (items[0], keys[0]) : nil }

    /// The expert with the largest key that `pinned` does not hold, or nil: the eviction victim of the heap-keyed
    /// policies. Pinned entries (a layer's set and copies still arriving: few) are passed over without moving: the
    /// search keeps the slots whose parents were all pinned (the frontier) and takes the largest key among them,
    /// replacing a pinned one by its children. Keys are distinct, so the answer does not depend on the heap's shape.
    func maxUnpinned(_ pinned: PinSet) -> Int32? {
        guard count > 0 else { return nil }
        if !pinned.contains(items[0]) { return items[0] }  // the common case
        frontier.removeAll()
        frontier.append(0)
        while !frontier.isEmpty {
            var best = 0
            for i in 1..<frontier.count where keys[Int(frontier[i])] > keys[Int(frontier[best])] { best = i }
            let slot = Int(frontier[best])
            if !pinned.contains(items[slot]) { return items[slot] }
            frontier[best] = frontier[frontier.count - 1]
            frontier.removeLast()
            for child in (2 * slot + 1)...(2 * slot + 2) where child < count { frontier.append(Int32(child)) }
        }
        return nil
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
