import Testing
@testable import MoESim

/// The plan's page prefaulting runs beside the thread that fills the memory: it must never change a byte.
struct PagePrefaultTests {
    @Test func bytesWrittenWhileItRunsAreKept() {
        let count = 6 << 20  // 24 MiB of Int32 in two regions, above the threshold together
        let a = UnsafeMutablePointer<Int32>.allocate(capacity: count), b = UnsafeMutablePointer<Int32>.allocate(capacity: count)
        defer { a.deallocate(); b.deallocate() }
        let prefault = PagePrefault([(UnsafeMutableRawPointer(a), count * 4), (UnsafeMutableRawPointer(b), count * 4)])
        #expect(prefault != nil)
        for i in 0..<count { a[i] = Int32(truncatingIfNeeded: i &* 2_654_435_761); b[i] = Int32(truncatingIfNeeded: ~i) }
        prefault?.wait()
        var same = true
        for i in 0..<count where a[i] != Int32(truncatingIfNeeded: i &* 2_654_435_761) || b[i] != Int32(truncatingIfNeeded: ~i) {
            same = false
        }
        #expect(same)
    }

    @Test func smallRegionsGetNoThread() {
        let small = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { small.deallocate() }
        #expect(PagePrefault([(small, 1 << 20)]) == nil)
    }

    /// A plan built with the prefault (a trace large enough for it) equals one built without.
    @Test func aLargePlanIsTheSameWithIt() {
        let trace = zipfTrace(seed: 3, layers: 16, experts: 64, topK: 4, tokens: 40_000, sequences: 4, prefill: 6)
        var builder = StepPlanBuilder(trace)
        builder.addSequentialSteps()
        let plan = StepPlan(builder)
        #expect(plan.accessExpert.count * 4 >= PagePrefault.worthwhileBytes / 2)
        var plain = StepPlanBuilder(trace, reserving: 0)
        plain.addSequentialSteps()
        let again = StepPlan(plain)
        #expect(plan.accessExpert == again.accessExpert && plan.accessTokens == again.accessTokens && plan.layerStart == again.layerStart)
    }
}
