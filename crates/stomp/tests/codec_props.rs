//! Property tests and a bounded-time robustness run for the frame codec.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use std::time::{Duration, Instant};
use stomp::frame::{Command, Decoder, Frame, Item, decode_all};

fn without_content_length(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| k != "content-length")
        .cloned()
        .collect()
}

fn escaped_command() -> impl Strategy<Value = Command> {
    prop::sample::select(
        Command::ALL
            .into_iter()
            .filter(|c| c.escapes_headers())
            .collect::<Vec<_>>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any header names/values (including `:`, `\\`, CR, LF, non-ASCII) and any body bytes
    /// (including NUL) survive encode → decode on escaping commands.
    #[test]
    fn roundtrip_escaped_frames(
        command in escaped_command(),
        headers in prop::collection::vec((any::<String>(), any::<String>()), 0..8),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let frame = Frame { command, headers: headers.clone(), body: Bytes::from(body.clone()) };
        let encoded = frame.to_bytes().expect("escaping commands encode anything");
        let items = decode_all(&encoded, &Decoder::default()).expect("own output decodes");
        prop_assert_eq!(items.len(), 1);
        let Item::Frame(back) = &items[0] else { panic!("expected frame") };
        prop_assert_eq!(back.command, command);
        prop_assert_eq!(without_content_length(&back.headers), without_content_length(&headers));
        prop_assert_eq!(&back.body[..], &body[..]);
    }

    /// Frames split at arbitrary points and interleaved with heart-beats decode the same.
    #[test]
    fn chunked_stream_decodes_identically(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..5),
        split_points in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut wire = BytesMut::new();
        for (i, body) in bodies.iter().enumerate() {
            wire.extend_from_slice(b"\n");
            Frame::new(Command::Message)
                .header("destination", format!("/queue/{i}"))
                .body(Bytes::from(body.clone()))
                .encode(&mut wire)
                .expect("encodable");
        }
        let wire = wire.freeze();
        let mut cuts: Vec<usize> = split_points.iter().map(|ix| ix.index(wire.len() + 1)).collect();
        cuts.sort_unstable();
        let decoder = Decoder::default();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut start = 0;
        for cut in cuts.into_iter().chain([wire.len()]) {
            buf.extend_from_slice(&wire[start..cut]);
            start = cut;
            while let Some(item) = decoder.decode(&mut buf).expect("valid stream") {
                if let Item::Frame(f) = item { frames.push(f); }
            }
        }
        prop_assert_eq!(frames.len(), bodies.len());
        for (frame, body) in frames.iter().zip(&bodies) {
            prop_assert_eq!(&frame.body[..], &body[..]);
        }
    }

    /// Arbitrary bytes never panic the decoder, and an `Ok(None)` leaves the buffer untouched.
    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..2048)) {
        let decoder = Decoder::new(1024);
        let mut buf = BytesMut::from(&input[..]);
        loop {
            let before = buf.clone();
            match decoder.decode(&mut buf) {
                Ok(Some(_)) => prop_assert!(buf.len() < before.len()),
                Ok(None) => { prop_assert_eq!(buf, before); break; }
                Err(_) => break,
            }
        }
    }
}

/// Deterministic xorshift so the run needs no extra dependency and failures are reproducible.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Poor man's fuzzing for CI without nightly: mutate valid frames and random bytes for ~2 s.
#[test]
fn decoder_survives_mutated_and_random_input_for_bounded_time() {
    let seeds: Vec<Bytes> = vec![
        Frame::new(Command::Message)
            .header("destination", "/amq/queue/q")
            .header("ack", "T_1")
            .body(&b"{\"order_uuid\":\"abc\"}"[..])
            .to_bytes()
            .expect("encodable"),
        Bytes::from_static(b"CONNECTED\nversion:1.2\nheart-beat:10000,10000\n\n\0"),
        Bytes::from_static(b"ERROR\nmessage:bad\\c\\n\ncontent-length:3\n\nabc\0\n\r\n"),
        Bytes::from_static(b"RECEIPT\r\nreceipt-id:r-1\r\n\r\n\0"),
    ];
    let interesting: &[u8] = b"\0\n\r:\\cnrx0123456789content-length";
    let decoder = Decoder::new(4096);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let mut runs = 0u64;
    let mut errors = 0u64;
    let mut frames = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        let mut input = seeds[(rng.next() % seeds.len() as u64) as usize].to_vec();
        match rng.next() % 4 {
            0 => {
                input = (0..rng.next() % 256).map(|_| rng.next() as u8).collect();
            }
            _ => {
                for _ in 0..=(rng.next() % 6) {
                    if input.is_empty() {
                        break;
                    }
                    let at = (rng.next() % input.len() as u64) as usize;
                    let byte = interesting[(rng.next() % interesting.len() as u64) as usize];
                    match rng.next() % 3 {
                        0 => input[at] = byte,
                        1 => input.insert(at, byte),
                        _ => {
                            input.remove(at);
                        }
                    }
                }
            }
        }
        match decode_all(&input, &decoder) {
            Ok(items) => {
                frames += items.iter().filter(|i| matches!(i, Item::Frame(_))).count() as u64
            }
            Err(_) => errors += 1,
        }
        runs += 1;
    }
    assert!(runs > 1000, "only {runs} inputs tried");
    // Both outcomes must have been exercised, or the mutator is not doing its job.
    assert!(errors > 0 && frames > 0, "errors={errors} frames={frames}");
}
