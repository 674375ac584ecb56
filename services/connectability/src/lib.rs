//! The umbrella crate: the composition root ([`catalog`]) that the `connectability` binary,
//! the test harness and the fault harness share.

pub mod catalog;
