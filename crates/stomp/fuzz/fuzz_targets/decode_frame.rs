#![no_main]
//! `cargo +nightly fuzz run decode_frame` (from crates/stomp): the decoder must never panic,
//! and every frame it accepts must re-encode and decode to the same frame.

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use stomp::frame::{Decoder, Item};

fuzz_target!(|data: &[u8]| {
    let decoder = Decoder::new(64 * 1024);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(item)) = decoder.decode(&mut buf) {
        if let Item::Frame(frame) = item
            && let Ok(bytes) = frame.to_bytes()
        {
            let mut again = BytesMut::from(&bytes[..]);
            match decoder.decode(&mut again) {
                Ok(Some(Item::Frame(back))) => {
                    assert_eq!(back.command, frame.command);
                    assert_eq!(back.body, frame.body);
                }
                other => panic!("re-encoded frame did not decode: {other:?}"),
            }
        }
    }
});
