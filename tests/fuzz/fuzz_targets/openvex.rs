//! OpenVEX documents ([`vex::parse_vex`]).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::scan::vex;

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = vex::parse_vex(data, "vex.json") {
        let _ = format!("{doc:?}");
    }
});
