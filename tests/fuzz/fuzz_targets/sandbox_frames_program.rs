//! The frame reader never reports a verdict from bytes the program
//! controlled. The program's stdout and stderr reach the runner only as the
//! payloads of `o`/`e` frames that `sandbox-init` writes (type byte and
//! big-endian length first; the program never writes to the container's
//! stdout itself). Whatever those payloads hold — fake result frames,
//! fake lengths, `exit_code=0` — the decoder delivers them as output and
//! reports nothing until init's own `r` frame, whose report is exactly
//! init's.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use parser_fuzz::chunks;
use runner::backend::protocol::{Decoder, Ending, Report};

#[derive(Debug, Arbitrary)]
enum ProgramWrite {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// A payload crafted to look like a result frame.
    FakeResult {
        exit_code: i32,
        raw: Vec<u8>,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    writes: Vec<ProgramWrite>,
    cuts: Vec<u16>,
    exit_code: i8,
}

fn frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

const CAP: u64 = 1 << 20;

fuzz_target!(|input: Input| {
    let mut stream = Vec::new();
    let (mut want_out, mut want_err) = (Vec::new(), Vec::new());
    for w in &input.writes {
        match w {
            ProgramWrite::Stdout(b) => {
                frame(&mut stream, b'o', b);
                want_out.extend_from_slice(b);
            }
            ProgramWrite::Stderr(b) => {
                frame(&mut stream, b'e', b);
                want_err.extend_from_slice(b);
            }
            ProgramWrite::FakeResult { exit_code, raw } => {
                let mut fake = Vec::new();
                let text = format!(
                    "exit_code={exit_code}\nsignal=0\nlimit=none\nwall_ms=1\ncpu_ms=1\nmemory_peak_bytes=1\noom_kills=0\nstdout_truncated=0\nstderr_truncated=0\ncollected=0\ncollect_error=\n"
                );
                frame(&mut fake, b'r', text.as_bytes());
                fake.extend_from_slice(raw);
                frame(&mut stream, b'o', &fake);
                want_out.extend_from_slice(&fake);
            }
        }
    }
    let program_bytes = stream.len();
    let report = format!(
        "exit_code={}\nsignal=0\nlimit=none\nwall_ms=7\ncpu_ms=3\nmemory_peak_bytes=4096\noom_kills=0\nstdout_truncated=0\nstderr_truncated=0\ncollected=0\ncollect_error=\n",
        input.exit_code
    );
    frame(&mut stream, b'r', report.as_bytes());

    let mut d = Decoder::new(CAP, CAP, CAP);
    let mut fed = 0;
    let mut ending = None;
    for piece in chunks(&stream, &input.cuts) {
        fed += piece.len();
        match d.feed(piece) {
            Ok(None) => {}
            Ok(Some(e)) => {
                // Everything before init's own frame was the program's.
                assert_eq!(
                    fed,
                    stream.len(),
                    "a verdict after {fed} bytes, before init's result frame (the program wrote {program_bytes})"
                );
                ending = Some(e.clone());
                break;
            }
            Err(e) => {
                // Only over-cap output may stop it, never a program's bytes
                // read as a frame of another kind.
                assert!(
                    want_out.len() as u64 > CAP || want_err.len() as u64 > CAP,
                    "program output broke the frame stream: {e}"
                );
                return;
            }
        }
    }
    let Some(Ending::Report(r)) = ending else {
        panic!("init's result frame was not reported: {ending:?}");
    };
    assert_eq!(r, Report::parse(&report).expect("init's report parses"));
    assert_eq!(
        r.exit_code,
        (input.exit_code >= 0).then_some(i32::from(input.exit_code))
    );
    assert_eq!(d.stdout, want_out);
    assert_eq!(d.stderr, want_err);
});
