//! Counters of event consumption, in the process's default Prometheus registry (the
//! platform's `/metrics` serves it). Gauges of stored state (outbox, dead letters) are read
//! at scrape time instead: see the platform's store sampler.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, Opts, register_int_counter_vec};

/// Events a consumer was handed again: a failed attempt, an ack lost to a crash, or a
/// redelivery after the ack wait.
pub static REDELIVERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "connectability_event_redeliveries_total",
            "Events delivered to a consumer more than once, by consumer"
        ),
        &["consumer"]
    )
    .expect("registered once")
});

/// Events a consumer gave up on and recorded as dead letters.
pub static DEAD_LETTERED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "connectability_events_dead_lettered_total",
            "Events a consumer gave up on (written to dead_letters), by consumer"
        ),
        &["consumer"]
    )
    .expect("registered once")
});
