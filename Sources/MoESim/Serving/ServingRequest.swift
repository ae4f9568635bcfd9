/// One request of a served trace: a sequence, its prompt (its prefill tokens) and its output (its decode tokens),
/// which lie on consecutive lines of the trace, prompt first.
struct ServingRequest: Sendable {
    let seq: Int32
    /// Trace index of its first token.
    let firstToken: Int
    let promptTokens: Int
    let outputTokens: Int
    /// Tokens of context its KV cache holds once it has finished: its last position + 1.
    let kvTokens: Int64
    var tokenCount: Int { promptTokens + outputTokens }

    /// The requests of `trace`, in its order.
    /// - Throws: `ConfigError` when a sequence's tokens are not consecutive, or a prefill token follows a decode one.
    static func all(in trace: RoutingTrace) throws -> [ServingRequest] {
        var requests: [ServingRequest] = [], seen = Set<Int32>()
        var t = 0
        while t < trace.tokenCount {
            let seq = trace.seq[t], first = t
            guard seen.insert(seq).inserted else {
                throw ConfigError.invalidValue(field: "trace \(trace.name)", value: "sequence \(seq) at token \(t)",
                                               expected: "each sequence's tokens on consecutive lines, to serve it as one request")
            }
            while t < trace.tokenCount && trace.seq[t] == seq && trace.phase[t] == .prefill { t += 1 }
            let prompt = t - first
            while t < trace.tokenCount && trace.seq[t] == seq && trace.phase[t] == .decode { t += 1 }
            if t < trace.tokenCount && trace.seq[t] == seq {
                throw ConfigError.invalidValue(field: "trace \(trace.name)", value: "sequence \(seq): a prefill token at token \(t) after its decode tokens",
                                               expected: "a request's prefill tokens before its decode tokens")
            }
            requests.append(ServingRequest(seq: seq, firstToken: first, promptTokens: prompt, outputTokens: t - first - prompt,
                                           kvTokens: Int64(trace.pos[t - 1]) + 1))
        }
        return requests
    }
}
