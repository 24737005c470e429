//! `Topics::new` and `Topics::parse_up`: HQ splits every incoming topic (untrusted: any
//! client can publish under `+/up/+` on a broker without ACLs) into bus id and kind.
//!
//! Input: the first byte picks the default prefix (even) or a fuzzed one (odd: text up to
//! the first newline); the rest is the topic.
//! Properties: a prefix is accepted only without wildcards, NUL or empty levels; whatever
//! `parse_up` accepts is exactly the topic `up` builds from its answer; and every topic
//! `up` builds parses back.
#![no_main]

use keliling_shared::topics::{Topics, UpKind};
use keliling_shared::BusId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (topics, topic) = if mode % 2 == 0 {
        (Topics::default(), text)
    } else {
        let (prefix, topic) = text.split_once('\n').unwrap_or((text, ""));
        match Topics::new(prefix) {
            Ok(t) => {
                assert!(!prefix.is_empty() && !prefix.contains(['+', '#', '\0']));
                assert!(prefix.split('/').all(|l| !l.is_empty()), "{prefix:?}");
                assert_eq!(t.prefix(), prefix);
                (t, topic)
            }
            Err(_) => return,
        }
    };
    if let Ok((bus, kind)) = topics.parse_up(topic) {
        assert_eq!(
            topics.up(&bus, kind),
            topic,
            "parse_up accepted a non-canonical topic"
        );
        assert!(!bus.as_str().contains(['/', '+', '#']));
    }
    // Every topic we build parses back, including for a bus id taken from the input.
    let bus = topic
        .rsplit('/')
        .find_map(|s| BusId::parse(s).ok())
        .unwrap_or_else(|| BusId::parse("bus-01").expect("bus id"));
    for kind in UpKind::ALL {
        let t = topics.up(&bus, kind);
        assert_eq!(topics.parse_up(&t), Ok((bus.clone(), kind)), "{t:?}");
    }
});
