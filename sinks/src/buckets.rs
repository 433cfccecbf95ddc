//! What the Prometheus sink and the rules written for it share.

use std::time::Duration;

/// The default histogram buckets: 1, 5, 10, 50, 100 and 500 us; 1, 5, 10, 50, 100 and 500 ms;
/// 1, 5 and 10 s.
pub const DEFAULT_BUCKETS: [Duration; 15] = [
    Duration::from_micros(1),
    Duration::from_micros(5),
    Duration::from_micros(10),
    Duration::from_micros(50),
    Duration::from_micros(100),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(10),
];
