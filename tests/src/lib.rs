//! Test-only crate: the suites live in tests/tests/, the benches in tests/benches/, and the
//! fixtures both use here.

pub mod fanout;
