//! The emulator checks of an App revision, shared by `winky emulate` and the
//! operator: every Rule's tests, every Function's test cases in a container
//! sandbox, and the App's health probe — summed up in an [`EmulatorReport`].

pub mod bundle;
pub mod report;
pub mod rules;

pub use bundle::{Bundle, revision};
pub use report::{Check, CheckKind, EmulatorReport};
