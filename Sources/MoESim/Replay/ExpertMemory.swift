/// GPU memory for experts: which experts are resident and how many bytes they take, per partition.
///
///     var memory = ExpertMemory(experts: 256, partitionOf: zeros, capacities: [budget])
///     memory.admit(17, bytes: b)   // precondition: it fits
///
/// Works like SimPy's Container: `admit` and `release` keep `0 <= used <= capacity` in every partition, checked
/// after each mutation. Copies in flight count as resident from the moment they are issued.
public struct ExpertMemory {
    let resident: UnsafeMutablePointer<Bool>
    let partitionOf: [Int32]
    public let capacities: [Int]
    public private(set) var used: [Int]
    public private(set) var totalUsed = 0
    public private(set) var peakUsed = 0
    public let experts: Int

    public init(experts: Int, partitionOf: [Int32], capacities: [Int]) {
        self.experts = experts
        resident = .allocate(capacity: experts)
        resident.initialize(repeating: false, count: experts)
        self.partitionOf = partitionOf
        self.capacities = capacities
        used = Array(repeating: 0, count: capacities.count)
    }

    /// Frees the flag array; the engine that owns this memory calls it once.
    func deallocate() { resident.deallocate() }

    @inline(__always) public func isResident(_ e: Int32) -> Bool { resident[Int(e)] }
    @inline(__always) public func partition(of e: Int32) -> Int { Int(partitionOf[Int(e)]) }
    @inline(__always) public func fits(_ bytes: Int, in partition: Int) -> Bool { used[partition] + bytes <= capacities[partition] }

    @inline(__always) public mutating func admit(_ e: Int32, bytes: Int) {
        let p = partition(of: e)
        precondition(!resident[Int(e)] && used[p] + bytes <= capacities[p], "expert memory over budget")
        resident[Int(e)] = true
        used[p] += bytes
        totalUsed += bytes
        if totalUsed > peakUsed { peakUsed = totalUsed }
    }

    @inline(__always) public mutating func release(_ e: Int32, bytes: Int) {
        let p = partition(of: e)
        precondition(resident[Int(e)] && used[p] >= bytes, "released an expert that is not resident")
        resident[Int(e)] = false
        used[p] -= bytes
        totalUsed -= bytes
    }
}
