@testable import FrameStream
import XCTest

final class FrameRingTests: XCTestCase {
    func testPlaceholder() throws { _ = try FrameRing(slots: 4, policy: .block) }
}
