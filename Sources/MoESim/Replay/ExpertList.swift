/// A reusable list of flat expert ids over raw memory, filled and cleared once per layer (the replay loop's
/// proposals and cancelled copies, the affinity predictor's scratch lists). An `Array` there costs a uniqueness
/// check per append and a `replaceSubrange` per clear (docs/performance.md, "Prefetching against LRU").
///
///     var list = ExpertList(capacity: 64)
///     list.append(17); list.removeAll()
///     list.deallocate()   // once, by its owner
public struct ExpertList {
    private var base: UnsafeMutablePointer<Int32>
    private var capacity: Int
    public private(set) var count = 0

    public init(capacity: Int) {
        self.capacity = max(1, capacity)
        base = .allocate(capacity: self.capacity)
    }

    /// Frees the storage; the owner calls it once.
    public func deallocate() { base.deallocate() }

    public var isEmpty: Bool { count == 0 }
    /// The ids, valid until the next append or `deallocate`.
    public var elements: UnsafeBufferPointer<Int32> { UnsafeBufferPointer(start: base, count: count) }

    @inline(__always) public mutating func append(_ e: Int32) {
        if count == capacity { grow() }
        base[count] = e
        count += 1
    }

    /// Appends `e` only `if` the condition holds, without a branch on it: `e` is written one past the last id
    /// either way, so the list needs room for one more than it keeps.
    @inline(__always) public mutating func append(_ e: Int32, if condition: Bool) {
        if count == capacity { grow() }
        base[count] = e
        count += condition ? 1 : 0
    }

    @inline(__always) public mutating func append(contentsOf ids: UnsafeBufferPointer<Int32>) {
        while count + ids.count > capacity { grow() }
        for e in ids {  // a plain loop: a layer's few ids cost less than a call to memmove
            base[count] = e
            count += 1
        }
    }

    /// Appends the `n` ids `first`, `first + 1`, ... (a layer's every expert).
    @inline(__always) public mutating func append(consecutiveFrom first: Int32, count n: Int) {
        while count + n > capacity { grow() }
        for i in 0..<n { base[count + i] = first &+ Int32(truncatingIfNeeded: i) }
        count += n
    }

    /// Appends `ids[range]`, the step plan's columns being arrays.
    @inline(__always) public mutating func append(_ ids: [Int32], in range: Range<Int>) {
        ids.withUnsafeBufferPointer { append(contentsOf: UnsafeBufferPointer(rebasing: $0[range])) }
    }

    @inline(__always) public mutating func removeAll() { count = 0 }
    @inline(__always) public mutating func removeLast() { count -= 1 }
    /// Keeps the first `n` ids.
    @inline(__always) public mutating func truncate(to n: Int) { count = n }

    /// Keeps, in order, the ids `mask` is true for.
    @inline(__always) public mutating func keep(where mask: UnsafePointer<Bool>) {
        var kept = 0
        for i in 0..<count where mask[Int(base[i])] { base[kept] = base[i]; kept += 1 }
        count = kept
    }

    /// The id at `i` (no bounds check beyond a debug precondition: callers index below `count`).
    @inline(__always) public subscript(i: Int) -> Int32 {
        get { assert(i < count); return base[i] }
        set { assert(i < count); base[i] = newValue }
    }

    /// Whether `e` is among the ids appended at positions `start...`.
    public func contains(_ e: Int32, from start: Int) -> Bool {
        for i in start..<count where base[i] == e { return true }
        return false
    }

    private mutating func grow() {
        let bigger = UnsafeMutablePointer<Int32>.allocate(capacity: capacity * 2)
        bigger.update(from: base, count: count)
        base.deallocate()
        base = bigger
        capacity *= 2
    }
}
