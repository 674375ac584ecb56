//! Test-only crate: the suites live in tests/tests/, the benches in tests/benches/, the fault
//! suite in src/chaos (run by src/bin/chaos.rs), and the fixtures they share here.

pub mod chaos;
pub mod fanout;
pub mod grpc;
pub mod json_rpc;
pub mod otlp;
