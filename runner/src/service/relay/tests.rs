use super::wire::{Frame, Inbox, MAX_PAYLOAD, PREFIX, Received, Wire, frames};
use super::*;
use crate::sandbox::{OutputStream, StageKind};
use crate::verdict::{LimitHit, OutputOrder, StageResult};

fn output(text: &str) -> SandboxEvent {
    SandboxEvent::Output {
        stage: StageKind::Run,
        stream: OutputStream::Stdout,
        text: text.to_owned(),
    }
}

/// Every frame of `batch`, as the channel carries them.
fn encode(batch: &[(u64, Wire)]) -> Vec<String> {
    batch
        .iter()
        .flat_map(|(seq, w)| frames("sender1", "run1", *seq, w))
        .collect()
}

fn receive(inbox: &mut Inbox, payloads: &[String]) -> Vec<Received> {
    payloads
        .iter()
        .flat_map(|p| {
            assert!(p.len() < 8000, "{} bytes", p.len());
            assert!(!p.contains('\0'));
            let frame = Frame::parse(p.strip_prefix(PREFIX).unwrap()).unwrap();
            inbox.accept(&frame)
        })
        .collect()
}

/// All output texts received, joined; panics on anything else but output.
fn texts(received: &[Received]) -> String {
    received
        .iter()
        .map(|r| match r {
            Received::Event(SandboxEvent::Output { text, .. }) => text.as_str(),
            other => panic!("not output: {other:?}"),
        })
        .collect()
}

fn relayed_feed() -> Feed {
    let mut feed = Feed::new();
    feed.cursor = Some(1);
    feed
}

#[test]
fn every_event_kind_round_trips() {
    let mut order = OutputOrder::default();
    order.push(crate::verdict::Stream::Stderr, 3);
    order.push(crate::verdict::Stream::Stdout, 4);
    let result = StageResult {
        stdout: "out\0\u{1}é".into(),
        stderr: "err".into(),
        order,
        stdout_truncated: true,
        exit_code: Some(3),
        signal: Some("SIGKILL".into()),
        wall_ms: 12,
        cpu_ms: 5,
        memory_peak_bytes: 1 << 20,
        limit: Some(LimitHit::Memory),
        message: Some("a \"message\"\n".into()),
        ..StageResult::default()
    };
    let events = vec![
        SandboxEvent::StageStarted(StageKind::Compile),
        SandboxEvent::Output {
            stage: StageKind::Compile,
            stream: OutputStream::Stderr,
            text: "NUL \0, bell \u{7}, tab \t, DEL \u{7f}, 日本語 😀".into(),
        },
        SandboxEvent::StageFinished {
            stage: StageKind::Run,
            result,
        },
    ];
    let mut feed = relayed_feed();
    for ev in &events {
        feed.push(ev);
    }
    let received = receive(&mut Inbox::default(), &encode(&feed.take()));
    let expected: Vec<Received> = events.into_iter().map(Received::Event).collect();
    assert_eq!(received, expected);
}

#[test]
fn large_output_is_cut_under_the_payload_limit_on_character_boundaries() {
    // Multi-byte characters and control characters (6 bytes escaped) mixed,
    // so that byte and encoded lengths differ.
    let unit = "é€😀\0\u{1}\n\"\\ab";
    let text: String = unit.repeat(1200);
    let mut feed = relayed_feed();
    feed.push(&output(&text));
    let payloads = encode(&feed.take());
    assert!(payloads.len() > 3, "{} frames", payloads.len());
    for p in &payloads {
        assert!(p.len() <= MAX_PAYLOAD, "{} bytes", p.len());
    }
    let received = receive(&mut Inbox::default(), &payloads);
    assert_eq!(texts(&received), text);
}

#[test]
fn a_large_stage_result_is_sent_in_parts_and_reassembled() {
    let result = StageResult {
        stdout: "ü\u{0}x".repeat(20_000),
        ..StageResult::default()
    };
    let ev = SandboxEvent::StageFinished {
        stage: StageKind::Run,
        result,
    };
    let wire = Wire::finished(
        StageKind::Run,
        match &ev {
            SandboxEvent::StageFinished { result, .. } => result,
            _ => unreachable!(),
        },
    );
    let payloads = frames("sender1", "run1", 1, &wire);
    assert!(payloads.len() > 10, "{} frames", payloads.len());
    let received = receive(&mut Inbox::default(), &payloads);
    assert_eq!(received, vec![Received::Event(ev)]);
    // A part lost: the event is missed, and the next one says so.
    let mut inbox = Inbox::default();
    let mut lossy = payloads.clone();
    lossy.remove(3);
    assert!(receive(&mut inbox, &lossy).is_empty());
    let next = frames("sender1", "run1", 2, &Wire::started(StageKind::Run));
    assert_eq!(
        receive(&mut inbox, &next),
        vec![
            Received::Lagged(1),
            Received::Event(SandboxEvent::StageStarted(StageKind::Run))
        ]
    );
}

#[test]
fn gaps_are_reported_and_replays_skipped() {
    let mut feed = relayed_feed();
    for i in 0..5 {
        feed.push(&SandboxEvent::StageStarted(if i % 2 == 0 {
            StageKind::Run
        } else {
            StageKind::Compile
        }));
    }
    let payloads = encode(&feed.take());
    assert_eq!(payloads.len(), 5);
    let mut inbox = Inbox::default();
    let first = receive(&mut inbox, &payloads[..2]);
    assert_eq!(first.len(), 2);
    // Event 3 lost on the way.
    let rest = receive(&mut inbox, &payloads[3..]);
    assert_eq!(rest[0], Received::Lagged(1));
    assert_eq!(rest.len(), 3);
    // A replay (for another runner) brings nothing new here.
    assert!(receive(&mut inbox, &payloads).is_empty());
    // A runner that joins late learns what the replay no longer has.
    let late = receive(&mut Inbox::default(), &payloads[2..]);
    assert_eq!(late[0], Received::Lagged(2));
    assert_eq!(late.len(), 4);
}

#[test]
fn another_execution_starts_a_new_sequence() {
    let mut inbox = Inbox::default();
    let w = Wire::started(StageKind::Run);
    let a = frames("first", "run1", 7, &w);
    assert_eq!(receive(&mut inbox, &a).len(), 2);
    let b = frames("second", "run1", 1, &w);
    assert_eq!(
        receive(&mut inbox, &b),
        vec![Received::Event(SandboxEvent::StageStarted(StageKind::Run))]
    );
}

#[test]
fn waiting_output_is_coalesced_until_sent() {
    let mut feed = relayed_feed();
    for i in 0..100 {
        feed.push(&output(&format!("line {i}\n")));
    }
    let batch = feed.take();
    assert_eq!(batch.len(), 1, "coalesced into one event");
    feed.push(&output("after\n"));
    feed.push(&output("more\n"));
    let next = feed.take();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].0, 2);
    // What was sent is not changed by what comes after: a replay sends the
    // same events with the same numbers.
    feed.push(&output("last\n"));
    feed.cursor = Some(1);
    let replay = feed.take();
    assert_eq!(replay.len(), 3);
    assert_eq!(replay[..2], [batch[0].clone(), next[0].clone()]);
}

#[test]
fn a_flood_drops_the_oldest_and_the_receiver_is_told() {
    let mut feed = relayed_feed();
    let mut inbox = Inbox::default();
    let first = receive(
        &mut inbox,
        &encode(&{
            feed.push(&output("start\n"));
            feed.take()
        }),
    );
    assert_eq!(texts(&first), "start\n");
    // Far more than is kept, before the relay sends again.
    let line = "x".repeat(999) + "\n";
    for _ in 0..1000 {
        feed.push(&output(&line));
    }
    assert!(feed.bytes <= REPLAY_BYTES + OUTPUT_CHUNK, "{}", feed.bytes);
    let received = receive(&mut inbox, &encode(&feed.take()));
    let Received::Lagged(missed) = received[0] else {
        panic!("no lagged first: {:?}", &received[..1]);
    };
    assert!(missed > 50, "{missed}");
    let kept = texts(&received[1..]);
    assert!(kept.len() <= REPLAY_BYTES && kept.len() > REPLAY_BYTES / 2);
    assert!(line.repeat(1000).ends_with(&kept));
}

#[test]
fn malformed_or_oversized_frames_are_refused() {
    let long = format!("s:r:1:0/1:{}", "x".repeat(8000));
    for bad in [
        "",
        "garbage",
        "s:r:1:0/1",
        "s:r:0:0/1:{}",
        "s:r:1:1/1:{}",
        "s:r:1:0/0:{}",
        "s:r:x:0/1:{}",
        "s:r:1:-1/1:{}",
        "s:r:99999999999999999999999:0/1:{}",
        "s:r/..:1:0/1:{}",
        ":r:1:0/1:{}",
        &long,
    ] {
        assert!(Frame::parse(bad).is_err(), "{bad:?}");
    }
    let mut inbox = Inbox::default();
    for body in [
        "{}",
        "not json",
        r#"{"k":"started","stage":"link"}"#,
        r#"{"k":"started","stage":"run","extra":1}"#,
        r#"{"k":"finished","stage":"run","result":{"stdout":"","stderr":"","order":"!!","stdout_truncated":false,"stderr_truncated":false,"exit_code":0,"signal":null,"wall_ms":0,"cpu_ms":0,"memory_peak_bytes":0,"limit":null,"message":null}}"#,
    ] {
        let f = format!("s:r:1:0/1:{body}");
        assert!(
            inbox.accept(&Frame::parse(&f).unwrap()).is_empty(),
            "{body}"
        );
    }
    // A part out of order is dropped, not appended.
    assert!(
        inbox
            .accept(&Frame::parse("s:r:2:1/2:{}").unwrap())
            .is_empty()
    );
    let ok = r#"s:r:3:0/1:{"k":"started","stage":"run"}"#;
    assert_eq!(
        inbox.accept(&Frame::parse(ok).unwrap()),
        vec![
            Received::Lagged(2),
            Received::Event(SandboxEvent::StageStarted(StageKind::Run))
        ]
    );
}

#[test]
fn nothing_is_sent_while_not_relayed() {
    let mut feed = Feed::new();
    feed.push(&output("x"));
    assert!(feed.take().is_empty());
    // A follow then sends what is kept, from the start.
    feed.cursor = Some(feed.entries.front().map_or(feed.next_seq, |e| e.seq));
    assert_eq!(feed.take().len(), 1);
}
