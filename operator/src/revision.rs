//! The revision id of an App's spec: what its children, its Functions'
//! workloads and its emulator results are stamped with.

use winky_crds::App;

/// The revision id of the App's spec: `winky_emulator::revision` (`r-` and
/// the first hex digits of the sha256 of the spec), so that
/// `status.revision.id` and `status.emulator.revision` agree by construction.
pub fn of(app: &App) -> String {
    winky_emulator::revision(app)
}
