import Verbs

/// An in-memory endpoint's prepared request (`ConnectedEndpoint.prepare`): each post is the
/// request again through `postSend`, with the post's id, signaling and immediate data, so it
/// follows the link's rules (queue depth, ordering, faults) like any other request.
final class InMemoryPreparedPost: PreparedPost {
    private let endpoint: InMemoryEndpoint
    private var request: SendRequest

    init(endpoint: InMemoryEndpoint, request: SendRequest) {
        self.endpoint = endpoint
        self.request = request
    }

    func post(id: UInt64, signaled: Bool, immediate: UInt32?) throws(VerbsError) {
        request.id = id
        request.signaled = signaled
        if let immediate {
            switch request.operation {
            case let .writeWithImmediate(remote, offset, _):
                request.operation = .writeWithImmediate(remote, offset: offset, immediate: immediate)
            case .sendWithImmediate:
                request.operation = .sendWithImmediate(immediate)
            case .send, .write, .read:
                break  // No immediate data to replace, as with a verbs work request.
            }
        }
        try endpoint.postSend(request)
    }
}
