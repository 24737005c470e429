//! Protocol v1 on the wire: versioned binary envelopes.
//!
//! Layout of every payload: `b"KL"`, one version byte, then the body in postcard (a
//! compact serde format with varints: a record is a few hundred bytes, which matters on a
//! 2G link). Every decoder here treats its input as hostile: the size is checked before
//! anything is decoded, nothing panics, trailing bytes are refused, and every domain type
//! inside re-parses itself, so a decoded message holds only valid values.

use crate::application::{Application, GeoPoint, MAX_ATTACHMENT_BYTES};
use crate::bitmap::Bitmap;
use crate::catalogue::Catalogue;
use crate::decision::Decision;
use crate::ids::{ApplicationId, BusId, Sha256};
use crate::sign::{Purpose, SignError, Signed, SigningKey, VerifyingKeys};
use crate::time::UnixMillis;
use crate::topics::UpKind;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

pub const MAGIC: [u8; 2] = *b"KL";
pub const VERSION: u8 = 1;
/// The largest envelope either side sends or accepts. Set the MQTT clients' and brokers'
/// packet limits above this (see docs/DESIGN.md: rumqttc's 10 KiB default jams the link).
pub const MAX_MESSAGE_BYTES: usize = 96 * 1024;
/// The largest MQTT packet a Keliling broker lets through (Mosquitto's `max_packet_size`
/// in config/mosquitto.conf, rumqttd's `max_payload_size`). Clients accept packets up to
/// this size so that an oversized message reaches the decoder and is quarantined: a client
/// limit below the broker's would drop the connection on it, and a persistent session
/// would redeliver it forever, jamming the link.
pub const MAX_BROKER_PACKET_BYTES: usize = 256 * 1024;
/// Chunks are at most this big; the bus picks its chunk size up to it.
pub const MAX_CHUNK_BYTES: u32 = 64 * 1024;
pub const MIN_CHUNK_BYTES: u32 = 1024;
pub const DEFAULT_CHUNK_BYTES: u32 = 16 * 1024;
pub const MAX_QUERY_BLOBS: usize = 64;
pub const MAX_REASON_CHARS: usize = 500;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("message too large: {0} bytes, at most {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    #[error("message too short to hold a header ({0} bytes)")]
    TooShort(usize),
    #[error("not a Keliling message (bad magic)")]
    BadMagic,
    #[error("unknown protocol version {0} (this build speaks {VERSION})")]
    UnknownVersion(u8),
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the body")]
    Trailing(usize),
    #[error("invalid message: {0}")]
    Invalid(String),
    #[error("could not encode: {0}")]
    Encode(String),
    #[error(transparent)]
    Signature(#[from] SignError),
}

/// Everything a bus sends. `bus_id` must equal the bus id in the topic (HQ checks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpEnvelope {
    pub bus_id: BusId,
    pub sent_at: UnixMillis,
    pub body: Up,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Up {
    Record(Box<Application>),
    Chunk(Chunk),
    Query(BlobQuery),
    Heartbeat(Heartbeat),
    Status(BusStatus),
    /// The bus holds HQ's decision `version` on `application`, durably: HQ stops
    /// re-sending it. (Appended: earlier variants keep their tags.)
    DecisionAck {
        application: ApplicationId,
        version: u32,
    },
    /// A record with what the bus noted at capture (the photo advice it gave), on the
    /// record topic. The notes are not part of the record's content hash. Sent by buses
    /// before the station: HQ still reads it; new buses send [`Up::RecordWithNotes`].
    RecordNoted {
        app: Box<Application>,
        notes: RecordNotesV1,
    },
    /// A record with everything the bus noted at capture ([`RecordNotes`]).
    RecordWithNotes {
        app: Box<Application>,
        notes: RecordNotes,
    },
}

/// What the first buses noted (their photo advice): [`Up::RecordNoted`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RecordNotesV1 {
    pub photo_advice: Vec<PhotoAdvice>,
}

/// What the bus noted about a record at capture, beside the record itself (not part of
/// its content hash). No personal data: advice codes, counts, versions, an id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RecordNotes {
    /// The retake advice the photo station gave for the ID photo that was kept.
    pub photo_advice: Vec<PhotoAdvice>,
    /// The citizen saw the ID photo on the station's screen and accepted it (Dukcapil's
    /// rule for KTP-el photos), after this many retakes.
    pub photo_approval: Option<PhotoApproval>,
    /// The version of the service catalogue the bus checked the application against.
    pub catalogue_version: Option<u32>,
    /// The application this one completes: HQ asked for more information on it.
    pub amends: Option<ApplicationId>,
    /// Documents the operator saw (the service's checklist), by catalogue name.
    pub documents_seen: Vec<crate::application::FieldName>,
}

/// The most documents a record's notes may name.
pub const MAX_DOCUMENTS_SEEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoApproval {
    pub retakes: u16,
}

/// The first byte of [`RecordNotes::to_stored`]: never the first byte of a
/// [`RecordNotesV1`] (a length of at most [`MAX_PHOTO_ADVICE`]).
const STORED_NOTES_V2: u8 = 0xC2;

impl From<RecordNotesV1> for RecordNotes {
    fn from(v: RecordNotesV1) -> RecordNotes {
        RecordNotes {
            photo_advice: v.photo_advice,
            ..RecordNotes::default()
        }
    }
}

impl RecordNotes {
    /// Whether there is nothing to say beside the record.
    pub fn is_empty(&self) -> bool {
        *self == RecordNotes::default()
    }

    /// How the stores keep notes: a version byte, then postcard.
    pub fn to_stored(&self) -> Result<Vec<u8>, WireError> {
        let mut out = vec![STORED_NOTES_V2];
        out.extend(postcard::to_stdvec(self).map_err(|e| WireError::Encode(e.to_string()))?);
        Ok(out)
    }

    /// Reads [`RecordNotes::to_stored`], or the bare [`RecordNotesV1`] stores kept before.
    pub fn from_stored(bytes: &[u8]) -> Result<RecordNotes, WireError> {
        let bad = |e: postcard::Error| WireError::Malformed(format!("notes: {e}"));
        match bytes.split_first() {
            Some((&STORED_NOTES_V2, rest)) => postcard::from_bytes(rest).map_err(bad),
            _ => postcard::from_bytes::<RecordNotesV1>(bytes)
                .map(RecordNotes::from)
                .map_err(bad),
        }
    }

    fn check(&self) -> Result<(), WireError> {
        if self.photo_advice.len() > MAX_PHOTO_ADVICE {
            return Err(WireError::Invalid("too much photo advice".into()));
        }
        if self.documents_seen.len() > MAX_DOCUMENTS_SEEN {
            return Err(WireError::Invalid("too many documents seen".into()));
        }
        Ok(())
    }
}

/// The most advice one photo can carry (one of each kind).
pub const MAX_PHOTO_ADVICE: usize = 8;

/// Retake advice as it travels (the photo pipeline's `Advice`, without its decoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PhotoAdvice {
    TooSmall {
        width: u32,
        height: u32,
        min_width: u32,
        min_height: u32,
    },
    TooDark,
    TooBright,
    Blurred,
    WrongBackground {
        expected: BackgroundNote,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackgroundNote {
    Red,
    Blue,
    White,
}

impl PhotoAdvice {
    /// A stable name: `too_small`, `too_dark`, `too_bright`, `blurred`, `wrong_background`.
    pub fn code(&self) -> &'static str {
        match self {
            PhotoAdvice::TooSmall { .. } => "too_small",
            PhotoAdvice::TooDark => "too_dark",
            PhotoAdvice::TooBright => "too_bright",
            PhotoAdvice::Blurred => "blurred",
            PhotoAdvice::WrongBackground { .. } => "wrong_background",
        }
    }
}

impl Up {
    /// The topic kind this body must travel on.
    pub fn kind(&self) -> UpKind {
        match self {
            Up::Record(_) => UpKind::Record,
            Up::Chunk(_) => UpKind::Chunk,
            Up::Query(_) => UpKind::Query,
            Up::Heartbeat(_) => UpKind::Heartbeat,
            Up::Status(_) => UpKind::Status,
            Up::DecisionAck { .. } => UpKind::Ack,
            Up::RecordNoted { .. } | Up::RecordWithNotes { .. } => UpKind::Record,
        }
    }
}

/// One piece of a blob (an ID photo or document scan). A blob of `total_size` bytes in
/// `chunk_size` pieces has `ceil(total/chunk)` chunks; all but the last are full.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub blob: Sha256,
    pub total_size: u64,
    pub chunk_size: u32,
    pub index: u32,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Chunk({:?} #{}/{} {}B)",
            self.blob,
            self.index,
            self.count(),
            self.data.len()
        )
    }
}

/// How many chunks a blob of `total_size` has at `chunk_size`.
pub fn chunk_count(total_size: u64, chunk_size: u32) -> u32 {
    if chunk_size == 0 {
        return 0;
    }
    u32::try_from(total_size.div_ceil(u64::from(chunk_size))).unwrap_or(u32::MAX)
}

/// The byte range of chunk `index`.
pub fn chunk_range(total_size: u64, chunk_size: u32, index: u32) -> std::ops::Range<u64> {
    let start = u64::from(index) * u64::from(chunk_size);
    start.min(total_size)..(start + u64::from(chunk_size)).min(total_size)
}

impl Chunk {
    pub fn count(&self) -> u32 {
        chunk_count(self.total_size, self.chunk_size)
    }
    /// A chunk's header must describe a possible blob and its data must be exactly the
    /// bytes its index covers.
    pub fn check(&self) -> Result<(), WireError> {
        let invalid = |s: String| Err(WireError::Invalid(s));
        if !(MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES).contains(&self.chunk_size) {
            return invalid(format!("chunk size {} out of range", self.chunk_size));
        }
        if self.total_size == 0 || self.total_size > MAX_ATTACHMENT_BYTES {
            return invalid(format!("blob size {} out of range", self.total_size));
        }
        if self.index >= self.count() {
            return invalid(format!(
                "chunk index {} out of range (blob has {})",
                self.index,
                self.count()
            ));
        }
        let r = chunk_range(self.total_size, self.chunk_size, self.index);
        if self.data.len() as u64 != r.end - r.start {
            return invalid(format!(
                "chunk {} holds {} bytes, expected {}",
                self.index,
                self.data.len(),
                r.end - r.start
            ));
        }
        Ok(())
    }
}

/// "What do you hold of these blobs?": asked after a restart or when a blob's chunks are
/// all confirmed but HQ has not yet said it stored the blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobQuery {
    pub blobs: Vec<Sha256>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Applications not yet confirmed delivered by HQ.
    pub queue_depth: u32,
    /// Bytes of attachments HQ still lacks.
    pub bytes_waiting: u64,
    pub oldest_unsynced: Option<UnixMillis>,
    pub last_sync: Option<UnixMillis>,
    pub position: Option<GeoPoint>,
    pub software: String,
    pub bus_clock: UnixMillis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BusStatus {
    Online,
    /// Sent by the broker as the bus's last will when its connection dies.
    Offline,
}

/// Everything HQ sends to one bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownEnvelope {
    pub bus_id: BusId,
    pub sent_at: UnixMillis,
    pub body: Down,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Down {
    /// The record is committed at HQ; these blobs are still missing (with what HQ already
    /// holds of each). Not delivery yet: that is [`Down::Delivered`].
    RecordAck {
        application: ApplicationId,
        missing: Vec<BlobProgress>,
    },
    /// A snapshot of which chunks of one blob HQ holds. Snapshots replace each other.
    Progress(BlobProgress),
    /// The blob is verified (SHA-256) and committed to HQ's photo store.
    BlobStored { blob: Sha256 },
    /// HQ has committed the record and every blob it references: the only delivery ack.
    /// It names what HQ holds (the record's content hash and its blobs' hashes, sorted),
    /// and the bus moves its outbox only when those are its own record's.
    Delivered {
        application: ApplicationId,
        hq_received_at: UnixMillis,
        content_hash: Sha256,
        blobs: Vec<Sha256>,
    },
    /// HQ quarantined what the bus sent, with the reason. The bus keeps its copy and shows
    /// the reason to the operator; it does not re-send.
    Rejected {
        application: Option<ApplicationId>,
        blob: Option<Sha256>,
        reason: String,
    },
    /// HQ's decision on one of the bus's applications, to keep and show the citizen.
    /// The bus acknowledges with [`Up::DecisionAck`] once it is stored.
    Decision(Box<Decision>),
}

/// What HQ tells every bus at once, retained on a `{prefix}/fleet/...` topic so a bus
/// that connects later still hears it. Signed under [`Purpose::Fleet`]: a message signed
/// for one bus can never pass for a fleet message, nor the other way round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetEnvelope {
    pub sent_at: UnixMillis,
    pub body: Fleet,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Fleet {
    /// The service catalogue HQ checks applications against (on `fleet/catalogue`).
    /// A bus keeps the newest version it has heard of.
    Catalogue(Box<Catalogue>),
}

impl FleetEnvelope {
    pub fn new(body: Fleet) -> Self {
        FleetEnvelope {
            sent_at: UnixMillis::now(),
            body,
        }
    }

    /// The fleet topic's name under `{prefix}/fleet/` for this message.
    pub fn topic_name(&self) -> &'static str {
        match self.body {
            Fleet::Catalogue(_) => FLEET_CATALOGUE,
        }
    }

    /// The signed, retained payload HQ publishes. Refused when over
    /// [`MAX_MESSAGE_BYTES`] (a catalogue too large for one message).
    pub fn encode_signed(&self, key: &SigningKey) -> Result<Vec<u8>, WireError> {
        let body = postcard::to_stdvec(self).map_err(|e| WireError::Encode(e.to_string()))?;
        encode(&key.sign_for(Purpose::Fleet, body))
    }

    /// Decodes a fleet payload, believing it only if one of `keys` signed it for the
    /// fleet; the body is decoded only after the signature checks.
    pub fn decode_verified(bytes: &[u8], keys: &VerifyingKeys) -> Result<Self, WireError> {
        let signed: Signed = decode(bytes)?;
        let body = keys.verify_for(Purpose::Fleet, &signed)?;
        let env: FleetEnvelope = decode_body(body)?;
        match &env.body {
            Fleet::Catalogue(c) => c
                .validate()
                .map_err(|e| WireError::Invalid(e.to_string()))?,
        }
        Ok(env)
    }
}

/// `{prefix}/fleet/catalogue`: the service catalogue.
pub const FLEET_CATALOGUE: &str = "catalogue";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobProgress {
    pub blob: Sha256,
    pub chunk_count: u32,
    pub have: Bitmap,
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    let out = postcard::to_extend(value, out).map_err(|e| WireError::Encode(e.to_string()))?;
    if out.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(out.len()));
    }
    Ok(out)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    if bytes.len() < 3 {
        return Err(WireError::TooShort(bytes.len()));
    }
    if bytes[..2] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if bytes[2] != VERSION {
        return Err(WireError::UnknownVersion(bytes[2]));
    }
    decode_body(&bytes[3..])
}

/// Decodes a postcard body (no header): the whole of it, nothing after.
fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    let _stale = crate::de_error::take();
    let (value, rest) = postcard::take_from_bytes(body).map_err(|e| match e {
        // A domain type refused its value: say which rule it broke (see `de_error`).
        postcard::Error::SerdeDeCustom => match crate::de_error::take() {
            Some(why) => WireError::Invalid(why),
            None => WireError::Malformed(e.to_string()),
        },
        e => WireError::Malformed(e.to_string()),
    })?;
    if !rest.is_empty() {
        return Err(WireError::Trailing(rest.len()));
    }
    Ok(value)
}

impl UpEnvelope {
    pub fn new(bus_id: BusId, body: Up) -> Self {
        UpEnvelope {
            bus_id,
            sent_at: UnixMillis::now(),
            body,
        }
    }
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        encode(self)
    }
    /// Decodes and checks everything that can be checked without the store.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let env: UpEnvelope = decode(bytes)?;
        match &env.body {
            Up::Record(app) => check_record(app, &env.bus_id)?,
            Up::RecordNoted { app, notes } => {
                check_record(app, &env.bus_id)?;
                if notes.photo_advice.len() > MAX_PHOTO_ADVICE {
                    return Err(WireError::Invalid("too much photo advice".into()));
                }
            }
            Up::RecordWithNotes { app, notes } => {
                check_record(app, &env.bus_id)?;
                notes.check()?;
                if notes.amends == Some(app.id) {
                    return Err(WireError::Invalid(
                        "an application cannot amend itself".into(),
                    ));
                }
            }
            Up::Chunk(c) => c.check()?,
            Up::Query(q) if q.blobs.len() > MAX_QUERY_BLOBS => {
                return Err(WireError::Invalid(format!(
                    "query for {} blobs, at most {MAX_QUERY_BLOBS}",
                    q.blobs.len()
                )))
            }
            Up::Heartbeat(h) if h.software.len() > 64 => {
                return Err(WireError::Invalid("software version too long".into()))
            }
            _ => {}
        }
        Ok(env)
    }
}

/// Signs raw body bytes into a down payload, whatever they hold. For tests and fuzzing:
/// it lets the body decoder behind the signature see bytes no envelope encodes. HQ
/// signs with [`DownEnvelope::encode_signed`].
pub fn encode_signed_body(key: &SigningKey, body: &[u8]) -> Result<Vec<u8>, WireError> {
    encode(&key.sign(body.to_vec()))
}

/// A record's shape, and that it is the sending bus's own.
fn check_record(app: &Application, sender: &BusId) -> Result<(), WireError> {
    app.check_shape()
        .map_err(|e| WireError::Invalid(e.to_string()))?;
    if app.bus_id != *sender {
        return Err(WireError::Invalid(format!(
            "record of bus {} inside an envelope of bus {}",
            app.bus_id, sender
        )));
    }
    Ok(())
}

impl DownEnvelope {
    pub fn new(bus_id: BusId, body: Down) -> Self {
        DownEnvelope {
            bus_id,
            sent_at: UnixMillis::now(),
            body,
        }
    }

    /// The signed payload HQ publishes (see [`crate::sign`]).
    pub fn encode_signed(&self, key: &SigningKey) -> Result<Vec<u8>, WireError> {
        let body = postcard::to_stdvec(self).map_err(|e| WireError::Encode(e.to_string()))?;
        encode(&key.sign(body))
    }

    /// Decodes a payload from HQ, believing it only if one of `keys` signed it. The body
    /// is decoded only after its signature checks, so a forger reaches no decoder but
    /// the small outer one.
    pub fn decode_verified(bytes: &[u8], keys: &VerifyingKeys) -> Result<Self, WireError> {
        let signed: Signed = decode(bytes)?;
        let body = keys.verify(&signed)?;
        let env: DownEnvelope = decode_body(body)?;
        env.check()?;
        Ok(env)
    }

    /// What the types alone do not bound.
    fn check(&self) -> Result<(), WireError> {
        match &self.body {
            Down::Rejected { reason, .. } if reason.chars().count() > MAX_REASON_CHARS => {
                Err(WireError::Invalid("rejection reason too long".into()))
            }
            Down::Delivered { blobs, .. }
                if blobs.len() > crate::application::MAX_ATTACHMENTS
                    || blobs.windows(2).any(|w| w[0] >= w[1]) =>
            {
                Err(WireError::Invalid(
                    "delivery ack: blob hashes not sorted, repeated or too many".into(),
                ))
            }
            Down::Decision(d) => d.check().map_err(WireError::Invalid),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk() -> Chunk {
        Chunk {
            blob: Sha256::digest(b"x"),
            total_size: 40_000,
            chunk_size: 16_384,
            index: 2,
            data: vec![7; 40_000 - 2 * 16_384],
        }
    }

    #[test]
    fn roundtrip_chunk() {
        let env = UpEnvelope::new(BusId::parse("bus-01").unwrap(), Up::Chunk(chunk()));
        let bytes = env.encode().unwrap();
        assert_eq!(&bytes[..3], b"KL\x01");
        assert_eq!(UpEnvelope::decode(&bytes).unwrap(), env);
    }

    #[test]
    fn a_refused_domain_value_says_why() {
        // A bus id with a capital letter, patched into an otherwise valid envelope.
        let env = UpEnvelope::new(BusId::parse("bus-01").unwrap(), Up::Chunk(chunk()));
        let mut bytes = env.encode().unwrap();
        let at = bytes.windows(6).position(|w| w == b"bus-01").unwrap();
        bytes[at] = b'B';
        match UpEnvelope::decode(&bytes) {
            Err(WireError::Invalid(why)) => assert!(why.contains("Bus-01"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let env = UpEnvelope::new(BusId::parse("bus-01").unwrap(), Up::Chunk(chunk()));
        let bytes = env.encode().unwrap();
        assert_eq!(UpEnvelope::decode(&[]), Err(WireError::TooShort(0)));
        assert_eq!(UpEnvelope::decode(b"XX\x01"), Err(WireError::BadMagic));
        assert_eq!(
            UpEnvelope::decode(b"KL\x09abc"),
            Err(WireError::UnknownVersion(9))
        );
        assert!(matches!(
            UpEnvelope::decode(&vec![0; MAX_MESSAGE_BYTES + 1]),
            Err(WireError::TooLarge(_))
        ));
        // Every truncation fails cleanly.
        for n in 3..bytes.len() {
            assert!(
                UpEnvelope::decode(&bytes[..n]).is_err(),
                "truncated at {n} decoded"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(UpEnvelope::decode(&long), Err(WireError::Trailing(1)));
        // Flipping bytes never panics.
        for i in 3..bytes.len().min(200) {
            let mut b = bytes.clone();
            b[i] ^= 0xA5;
            let _ = UpEnvelope::decode(&b);
        }
    }

    #[test]
    fn chunk_bounds_are_checked() {
        let mut c = chunk();
        c.index = 3;
        assert!(c.check().is_err());
        let mut c = chunk();
        c.data.pop();
        assert!(c.check().is_err());
        let mut c = chunk();
        c.total_size = MAX_ATTACHMENT_BYTES + 1;
        assert!(c.check().is_err());
        assert_eq!(chunk_count(40_000, 16_384), 3);
        assert_eq!(chunk_range(40_000, 16_384, 2), 32_768..40_000);
    }

    #[test]
    fn the_city_catalogue_travels_signed_for_the_fleet_only() {
        let hq = SigningKey::generate();
        let keys = VerifyingKeys::new(vec![hq.verifying_key()]).unwrap();
        let cat = Catalogue::from_toml(include_str!("../../config/services-city.toml")).unwrap();
        let env = FleetEnvelope::new(Fleet::Catalogue(Box::new(cat)));
        let bytes = env.encode_signed(&hq).unwrap();
        // 200 services, 13 agencies: well inside one message, with room to grow.
        assert!(
            bytes.len() < MAX_MESSAGE_BYTES * 3 / 4,
            "{} bytes",
            bytes.len()
        );
        assert_eq!(FleetEnvelope::decode_verified(&bytes, &keys).unwrap(), env);
        // Not a down message, and a down message is not a fleet one.
        assert!(DownEnvelope::decode_verified(&bytes, &keys).is_err());
        let down = delivered("bus-01").encode_signed(&hq).unwrap();
        assert!(matches!(
            FleetEnvelope::decode_verified(&down, &keys),
            Err(WireError::Signature(SignError::BadSignature))
        ));
        // Another key's catalogue is not believed.
        let other = SigningKey::generate();
        assert!(matches!(
            FleetEnvelope::decode_verified(&env.encode_signed(&other).unwrap(), &keys),
            Err(WireError::Signature(SignError::UnknownKey(_)))
        ));
        // Signed by HQ but inconsistent (a service of an unknown agency): refused.
        let Fleet::Catalogue(mut bad) = env.body.clone();
        bad.services[0].agency = "NOPE".into();
        let bad = FleetEnvelope::new(Fleet::Catalogue(bad))
            .encode_signed(&hq)
            .unwrap();
        assert!(matches!(
            FleetEnvelope::decode_verified(&bad, &keys),
            Err(WireError::Invalid(_))
        ));
    }

    fn delivered(bus: &str) -> DownEnvelope {
        DownEnvelope::new(
            BusId::parse(bus).unwrap(),
            Down::Delivered {
                application: ApplicationId::new_v7(),
                hq_received_at: UnixMillis::now(),
                content_hash: Sha256::digest(b"record"),
                blobs: vec![Sha256::digest(b"a"), Sha256::digest(b"b")]
                    .into_iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            },
        )
    }

    #[test]
    fn down_messages_are_believed_only_with_a_pinned_signature() {
        let hq = SigningKey::generate();
        let keys = VerifyingKeys::new(vec![hq.verifying_key()]).unwrap();
        let env = delivered("bus-01");
        let bytes = env.encode_signed(&hq).unwrap();
        assert_eq!(DownEnvelope::decode_verified(&bytes, &keys).unwrap(), env);
        // A forger's key.
        let forged = env.encode_signed(&SigningKey::generate()).unwrap();
        assert!(matches!(
            DownEnvelope::decode_verified(&forged, &keys),
            Err(WireError::Signature(_))
        ));
        // Any flipped byte: refused, never a panic.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(
                DownEnvelope::decode_verified(&b, &keys).is_err(),
                "byte {i}"
            );
        }
        // Unsigned envelopes are not down messages.
        let unsigned = encode(&env).unwrap();
        assert!(DownEnvelope::decode_verified(&unsigned, &keys).is_err());
    }

    #[test]
    fn a_signed_body_with_unsorted_blobs_or_trailing_bytes_is_refused() {
        let hq = SigningKey::generate();
        let keys = VerifyingKeys::new(vec![hq.verifying_key()]).unwrap();
        let mut env = delivered("bus-01");
        if let Down::Delivered { blobs, .. } = &mut env.body {
            blobs.reverse();
        }
        let bytes = env.encode_signed(&hq).unwrap();
        assert!(matches!(
            DownEnvelope::decode_verified(&bytes, &keys),
            Err(WireError::Invalid(_))
        ));
        let mut body = postcard::to_stdvec(&delivered("bus-01")).unwrap();
        body.push(0);
        let bytes = encode(&hq.sign(body)).unwrap();
        assert_eq!(
            DownEnvelope::decode_verified(&bytes, &keys),
            Err(WireError::Trailing(1))
        );
    }
}
