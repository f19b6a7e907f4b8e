//! libgit2's network timeouts are process-wide settings behind an `unsafe`
//! API; this is the one place the operator crate allows `unsafe`.

use std::sync::Once;
use std::time::Duration;

/// Connecting to a remote gives up after this long.
pub const CONNECT: Duration = Duration::from_secs(10);
/// A remote that sends nothing for this long is given up on.
pub const IDLE: Duration = Duration::from_secs(60);

static SET: Once = Once::new();

/// Sets libgit2's connect and read timeouts, once per process.
#[allow(unsafe_code)]
pub fn init() {
    SET.call_once(|| {
        // SAFETY: the setters write libgit2 globals without locking, which is a
        // data race only if another thread uses libgit2 at the same time.
        // `Once` serialises the calls and makes every other caller wait, and
        // every use of libgit2 in the operator starts with this call, so no
        // other thread of the operator can be inside libgit2 meanwhile.
        unsafe {
            git2::opts::set_server_connect_timeout_in_milliseconds(CONNECT.as_millis() as i32)
                .expect("libgit2 accepts a connect timeout");
            git2::opts::set_server_timeout_in_milliseconds(IDLE.as_millis() as i32)
                .expect("libgit2 accepts a server timeout");
        }
    });
}
