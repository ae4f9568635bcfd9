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
    /// Bytes each expert holds; 0 when it is not resident.
    private let held: UnsafeMutablePointer<Int>
    private let partitionOf: UnsafeMutablePointer<Int32>
    private let used: UnsafeMutablePointer<Int>
    private let capacity: UnsafeMutablePointer<Int>
    public let partitions: Int
    public private(set) var totalUsed = 0
    public private(set) var peakUsed = 0
    public let experts: Int

    public init(experts: Int, partitionOf: [Int32], capacities: [Int]) {
        precondition(partitionOf.count == experts && partitionOf.allSatisfy { Int($0) < capacities.count })
        self.experts = experts
        partitions = capacities.count
        held = .allocate(capacity: experts)
        held.initialize(repeating: 0, count: experts)
        self.partitionOf = .allocate(capacity: experts)
        self.partitionOf.initialize(from: partitionOf, count: experts)
        used = .allocate(capacity: capacities.count)
        used.initialize(repeating: 0, count: capacities.count)
        capacity = .allocate(capacity: capacities.count)
        capacity.initialize(from: capacities, count: capacities.count)
    }

    deinit {
        held.deallocate()
        partitionOf.deallocate()
        used.deallocate()
        capacity.deallocate()
    }

    public func used(in partition: Int) -> Int { used[partition] }
    public func capacity(of partition: Int) -> Int { capacity[partition] }

    @inline(__always) public func isResident(_ e: Int32) -> Bool { held[Int(e)] != 0 }
    /// The bytes `e` holds (0 when it is not resident).
    @inline(__always) public func bytes(of e: Int32) -> Int { held[Int(e)] }
    @inline(__always) public func partition(of e: Int32) -> Int { Int(partitionOf[Int(e)]) }
    @inline(__always) public func fits(_ bytes: Int, in partition: Int) -> Bool { used[partition] + bytes <= capacity[partition] }

    @inline(__always) public func admit(_ e: Int32, bytes: Int) {
        let p = partition(of: e)
        precondition(held[Int(e)] == 0 && bytes > 0 && used[p] + bytes <= capacity[p], "expert memory over budget")
        held[Int(e)] = bytes
        used[p] += bytes
        totalUsed += bytes
        if totalUsed > peakUsed { peakUsed = totalUsed }
    }

    /// Frees `e`'s bytes and returns how many they were.
    @discardableResult @inline(__always) public func release(_ e: Int32) -> Int {
        let p = partition(of: e), bytes = held[Int(e)]
        precondition(bytes > 0, "released an expert that is not resident")
        held[Int(e)] = 0
        used[p] -= bytes
        totalUsed -= bytes
        return bytes
    }
}
