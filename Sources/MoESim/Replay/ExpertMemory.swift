/// GPU memory for experts: which experts are resident and how many bytes they take, per partition.
///
///     var memory = ExpertMemory(experts: 256, partitionOf: zeros, capacities: [budget])
///     memory.admit(17, bytes: b)   // precondition: it fits
///
/// Works like SimPy's Container: `admit` and `release` keep `0 <= used <= capacity` in every partition, checked
/// after each mutation. Copies in flight count as resident from the moment they are issued. Each resident expert
/// keeps the size it was admitted with (a low-precision version is smaller), which its release gives back.
/// Raw buffers for the same reason as `LRUPolicy`: it is touched on every miss.
public final class ExpertMemory {
    /// Per expert, the bytes it holds (0 when it is not resident) beside its partition: one load finds both.
    private let slots: UnsafeMutablePointer<Slot>
    /// Per partition, its bytes in use beside its capacity.
    private let pools: UnsafeMutablePointer<Pool>
    public let partitions: Int
    public private(set) var totalUsed = 0
    public private(set) var peakUsed = 0
    public let experts: Int

    private struct Slot {
        var bytes: Int
        let partition: Int
    }

    private struct Pool {
        var used: Int
        let capacity: Int
    }

    public init(experts: Int, partitionOf: [Int32], capacities: [Int]) {
        precondition(partitionOf.count == experts && partitionOf.allSatisfy { Int($0) < capacities.count })
        self.experts = experts
        partitions = capacities.count
        slots = .allocate(capacity: experts)
        for e in 0..<experts { (slots + e).initialize(to: Slot(bytes: 0, partition: Int(partitionOf[e]))) }
        pools = .allocate(capacity: capacities.count)
        for (p, c) in capacities.enumerated() { (pools + p).initialize(to: Pool(used: 0, capacity: c)) }
    }

    deinit {
        slots.deallocate()
        pools.deallocate()
    }

    public func used(in partition: Int) -> Int { pools[partition].used }
    public func capacity(of partition: Int) -> Int { pools[partition].capacity }

    @inline(__always) public func isResident(_ e: Int32) -> Bool { slots[Int(e)].bytes != 0 }
    /// The bytes `e` holds (0 when it is not resident).
    @inline(__always) public func bytes(of e: Int32) -> Int { slots[Int(e)].bytes }
    @inline(__always) public func partition(of e: Int32) -> Int { slots[Int(e)].partition }
    /// Bytes still free in `partition`.
    @inline(__always) public func free(in partition: Int) -> Int {
        pools[partition].capacity &- pools[partition].used  // no overflow: 0 <= used <= capacity
    }

    @inline(__always) public func fits(_ bytes: Int, in partition: Int) -> Bool {
        bytes <= free(in: partition)
    }

    @inline(__always) public func admit(_ e: Int32, bytes: Int) {
        let slot = slots[Int(e)], pool = pools[slot.partition]
        precondition(slot.bytes == 0 && bytes > 0 && bytes <= pool.capacity &- pool.used, "expert memory over budget")
        slots[Int(e)].bytes = bytes
        pools[slot.partition].used = pool.used &+ bytes  // no overflow: at most the capacity
        totalUsed &+= bytes  // at most the sum of the capacities
        if totalUsed > peakUsed { peakUsed = totalUsed }
    }

    /// Frees `e`'s bytes and returns how many they were.
    @discardableResult @inline(__always) public func release(_ e: Int32) -> Int {
        let slot = slots[Int(e)]
        precondition(slot.bytes > 0, "released an expert that is not resident")
        slots[Int(e)].bytes = 0
        pools[slot.partition].used &-= slot.bytes
        totalUsed &-= slot.bytes
        return slot.bytes
    }
}
