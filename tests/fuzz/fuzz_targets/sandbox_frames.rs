//! The frames `sandbox-init` writes on the container's stdout, read the way
//! the runner reads them ([`Decoder::feed`], chunk by chunk as Docker
//! delivers them), from any bytes. The answer never depends on where the
//! chunks were cut, and what is kept never exceeds its cap.
//!
//! (The first run found that stopping at the first ending, as the driver
//! does, makes trailing bytes an error only when they share the result's
//! chunk; the decoder itself is consistent once every chunk is fed.)
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use parser_fuzz::chunks;
use runner::backend::protocol::{Decoder, Ending, ProtocolError};

#[derive(Debug, Arbitrary)]
struct Input {
    stdout_max: u16,
    stderr_max: u16,
    collect_max: u16,
    cuts: Vec<u16>,
    bytes: Vec<u8>,
}

fn run(
    input: &Input,
    pieces: &[&[u8]],
) -> (
    Result<Option<Ending>, ProtocolError>,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
) {
    let mut d = Decoder::new(
        u64::from(input.stdout_max),
        u64::from(input.stderr_max),
        u64::from(input.collect_max),
    );
    // Every piece is fed, as a reader that drains the stream would: bytes
    // after the result are an error whether they came in the result's chunk
    // or a later one.
    let mut last = Ok(None);
    for p in pieces {
        match d.feed(p) {
            Ok(e) => last = Ok(e.cloned()),
            Err(e) => {
                last = Err(e);
                break;
            }
        }
    }
    (last, d.stdout, d.stderr, d.artifacts)
}

fuzz_target!(|input: Input| {
    let whole = run(&input, &[&input.bytes]);
    let split = run(&input, &chunks(&input.bytes, &input.cuts));
    assert_eq!(
        whole, split,
        "the verdict depends on how the stream was cut"
    );
    let (_, stdout, stderr, artifacts) = whole;
    assert!(stdout.len() <= usize::from(input.stdout_max));
    assert!(stderr.len() <= usize::from(input.stderr_max));
    assert!(artifacts.len() <= usize::from(input.collect_max));
});
