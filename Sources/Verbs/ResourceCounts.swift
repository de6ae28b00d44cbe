/// The counts `rdma resource show DEVICE` prints for a device ("0: rxe0: pd 2 cq 4 qp 1 cm_id 0
/// mr 3 ctx 1 srq 0"), for leak checks: pd, cq, qp, mr and cm_id by name. Words that are not
/// followed by a number are skipped; an unparseable text gives an empty result.
public enum ResourceCounts {
    public static let keys = ["pd", "cq", "qp", "mr", "cm_id"]

    public static func parse(_ text: String) -> [String: Int] {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        var out: [String: Int] = [:]
        for (i, w) in words.enumerated() where i + 1 < words.count {
            if keys.contains(w), let n = Int(words[i + 1]) { out[w] = n }
        }
        return out
    }
}
