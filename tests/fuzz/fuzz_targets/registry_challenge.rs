//! A registry's `WWW-Authenticate` header ([`auth::parse_challenge`]).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::registry::auth;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = std::str::from_utf8(data) {
        let _ = auth::parse_challenge(header);
    }
});
