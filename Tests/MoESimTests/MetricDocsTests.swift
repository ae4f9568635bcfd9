import Foundation
import Testing
@testable import MoESim

/// Every report column is defined in docs/metrics.md, by its full name.
@Suite struct MetricDocsTests {
    @Test func everyColumnIsDocumented() throws {
        let docs = try String(contentsOfFile: packageRoot + "/docs/metrics.md", encoding: .utf8)
        for column in Metric.header(.all) {
            #expect(docs.contains("`\(column)`"), "docs/metrics.md does not define `\(column)`")
        }
    }
}
