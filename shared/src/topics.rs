//! MQTT topic names of protocol v1.
//!
//! `{prefix}/bus/{bus_id}/up/{kind}` carries bus to HQ; `{prefix}/bus/{bus_id}/down/{kind}`
//! HQ to one bus; `{prefix}/fleet/...` HQ to every bus. The bus id in the topic is what the
//! broker's ACL ties to the bus's certificate, so HQ checks it against the payload.

use crate::ids::BusId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("awalan topik tidak sah {0:?} (topic prefix must be non-empty, without wildcards or leading/trailing '/')")]
    Prefix(String),
    #[error("topik di luar protokol: {0:?} (topic outside the protocol)")]
    Unknown(String),
}

/// The kinds of message a bus sends; each has its own topic so the broker's ACL, shared
/// subscriptions and monitoring can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpKind {
    Record,
    Chunk,
    Query,
    Heartbeat,
    Status,
    /// The bus's acknowledgements of what HQ told it (decisions).
    Ack,
}

impl UpKind {
    pub const ALL: [UpKind; 6] = [
        UpKind::Record,
        UpKind::Chunk,
        UpKind::Query,
        UpKind::Heartbeat,
        UpKind::Status,
        UpKind::Ack,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            UpKind::Record => "record",
            UpKind::Chunk => "chunk",
            UpKind::Query => "query",
            UpKind::Heartbeat => "heartbeat",
            UpKind::Status => "status",
            UpKind::Ack => "ack",
        }
    }
    pub fn parse(s: &str) -> Option<UpKind> {
        UpKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

pub const DEFAULT_PREFIX: &str = "keliling/v1";

impl Default for Topics {
    fn default() -> Self {
        Topics {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl Topics {
    pub fn new(prefix: &str) -> Result<Self, TopicError> {
        let bad = prefix.is_empty()
            || prefix.starts_with('/')
            || prefix.ends_with('/')
            || prefix.contains(['+', '#', '\0'])
            || prefix.split('/').any(str::is_empty);
        if bad {
            Err(TopicError::Prefix(prefix.to_owned()))
        } else {
            Ok(Topics {
                prefix: prefix.to_owned(),
            })
        }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn up(&self, bus: &BusId, kind: UpKind) -> String {
        format!("{}/bus/{}/up/{}", self.prefix, bus, kind.as_str())
    }
    /// HQ's replies to one bus: acks, chunk progress, rejections.
    pub fn down(&self, bus: &BusId) -> String {
        format!("{}/bus/{}/down/sync", self.prefix, bus)
    }
    /// What a bus subscribes to for itself.
    pub fn down_filter(&self, bus: &BusId) -> String {
        format!("{}/bus/{}/down/#", self.prefix, bus)
    }
    /// Everything every bus sends, for HQ (optionally inside `$share/{group}/`).
    pub fn up_filter(&self, kind: UpKind) -> String {
        format!("{}/bus/+/up/{}", self.prefix, kind.as_str())
    }
    pub fn fleet(&self, name: &str) -> String {
        format!("{}/fleet/{}", self.prefix, name)
    }
    pub fn fleet_filter(&self) -> String {
        format!("{}/fleet/#", self.prefix)
    }
    /// The name of a fleet topic (`{prefix}/fleet/{name}`), or `None` for any other.
    pub fn fleet_name<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix("/fleet/"))
    }

    /// Splits an up topic into the bus id and kind it names.
    pub fn parse_up(&self, topic: &str) -> Result<(BusId, UpKind), TopicError> {
        let unknown = || TopicError::Unknown(topic.chars().take(200).collect());
        let rest = topic
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix("/bus/"))
            .ok_or_else(unknown)?;
        let mut parts = rest.split('/');
        let (Some(bus), Some("up"), Some(kind), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(unknown());
        };
        let bus = BusId::parse(bus).map_err(|_| unknown())?;
        let kind = UpKind::parse(kind).ok_or_else(unknown)?;
        Ok((bus, kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn roundtrip_and_rejects() {
        let t = Topics::default();
        let b = BusId::parse("bus-01").unwrap();
        let topic = t.up(&b, UpKind::Chunk);
        assert_eq!(topic, "keliling/v1/bus/bus-01/up/chunk");
        assert_eq!(t.parse_up(&topic).unwrap(), (b.clone(), UpKind::Chunk));
        for bad in [
            "keliling/v1/bus/bus-01/down/sync",
            "keliling/v1/bus/BUS/up/chunk",
            "other/bus/bus-01/up/chunk",
            "keliling/v1/bus/bus-01/up/chunk/x",
            "keliling/v1/bus/bus-01/up/nope",
        ] {
            assert!(t.parse_up(bad).is_err(), "{bad}");
        }
        assert_eq!(t.fleet_name(&t.fleet("catalogue")), Some("catalogue"));
        assert_eq!(t.fleet_name("keliling/v1/bus/bus-01/down/sync"), None);
        assert_eq!(t.fleet_name("other/fleet/catalogue"), None);
        assert!(Topics::new("a/#").is_err());
        assert!(Topics::new("/a").is_err());
        assert!(Topics::new("a//b").is_err());
    }
}
