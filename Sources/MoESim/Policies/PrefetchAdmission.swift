/// Which predictions a prefetching strategy leaves unissued (`prefetch.admission`, docs/policies.md "Admission"):
/// a prefetch that would land after its layer's gate only adds a copy in the way of the demand copies, and one
/// that evicts an expert due back sooner trades a likely hit for a guess.
///
/// - `deadline`: not issued when its estimated landing is after the estimated gate of its layer;
/// - `reuse`: not issued when the cache's victim for it is due no later (its layer comes no later than the
///   prediction's) and was used at its layer's last pass, while the predicted expert was not;
/// - `both`; `none` (the default): every proposal the room and the buffer allow is issued, as before.
public enum PrefetchAdmission: String, CaseIterable, Sendable, Codable {
    case none, deadline, reuse, both

    var checksDeadline: Bool { self == .deadline || self == .both }
    var checksReuse: Bool { self == .reuse || self == .both }
}
