/// GPU memory for experts: which experts are resident and how many bytes they take, per partition.
///
///     var memory = ExpertMemory(experts: 256, partitionOf: zeros, capacities: [budget])
///     memory.admit(17, bytes: b)   // precondition: it fits
///
/// Works like SimPy's Container: `admit` and `release` keep `0 <= used <= capacity` in every partition, checked
/// after each mutation. Copies in flight count as resident from the moment they are issued.
/// Raw buffers for the same reason as `LRUPolicy`: it is touched on every miss.
public final class ExpertMemory {
    private let resident: UnsafeMutablePointer<Bool>
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
        resident = .allocate(capacity: experts)
        resident.initialize(repeating: false, count: experts)
        self.partitionOf = .allocate(capacity: experts)
        self.partitionOf.initialize(from: partitionOf, count: experts)
        used = .allocate(capacity: capacities.count)
        used.initialize(repeating: 0, count: capacities.count)
        capacity = .allocate(capacity: capacities.count)
        capacity.initialize(from: capacities, count: capacities.count)
    }

    deinit {
        resident.deallocate()
        partitionOf.deallocate()
        used.deallocate()
        capacity.deallocate()
    }

    public func used(in partition: Int) -> Int { used[partition] }
    public func capacity(of partition: Int) -> Int { capacity[partition] }

    @inline(__always) public func isResident(_ e: Int32) -> Bool { resident[Int(e)] }
    @inline(__always) public func partition(of e: Int32) -> Int { Int(partitionOf[Int(e)]) }
    @inline(__always) public func fits(_ bytes: Int, in partition: Int) -> Bool { used[partition] + bytes <= capacity[partition] }

    @inline(__always) public func admit(_ e: Int32, bytes: Int) {
        let p = partition(of: e)
        precondition(!resident[Int(e)] && used[p] + bytes <= capacity[p], "expert memory over budget")
        resident[Int(e)] = true
        used[p] += bytes
        totalUsed += bytes
        if totalUsed > peakUsed { peakUsed = totalUsed }
    }

    @inline(__always) public func release(_ e: Int32, bytes: Int) {
        let p = partition(of: e)
        precondition(resident[Int(e)] && used[p] >= bytes, "released an expert that is not resident")
        resident[Int(e)] = false
        used[p] -= bytes
        totalUsed -= bytes
    }
}
