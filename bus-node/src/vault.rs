//! Encryption at rest on the bus: a stolen bus disk must not yield readable photos or NIKs.
//!
//! Standard envelope encryption with RustCrypto crates; nothing here is a new construction:
//! - Each bus store has an X25519 key pair. The public key is kept in clear (capture needs
//!   nothing else, so the operator's station can take applications while the bus is
//!   locked); the secret key is kept only *wrapped*: Argon2id derives a key-encryption key
//!   from the operator's passphrase, and XChaCha20-Poly1305 encrypts the secret key with
//!   it. The secret key is never written anywhere in clear.
//! - Every application record and every blob (photo, scan) gets its own random 256-bit
//!   content key, sealed to the bus public key with libsodium's sealed box
//!   (`crypto_box_seal`: ephemeral X25519 + XSalsa20-Poly1305).
//! - Contents are encrypted with XChaCha20-Poly1305 under that content key. A blob is cut
//!   into segments (the sync chunk size), each sealed on its own, STREAM-style: the nonce
//!   is the segment index plus a last-segment flag, and the associated data binds each
//!   segment to its blob's SHA-256, its size, the segment size and its index, so segments
//!   cannot be swapped, moved between blobs or truncated unnoticed, and sending chunk *i*
//!   decrypts only segment *i*. A record's associated data is its application id.
//! - A content key encrypts exactly one plaintext (new bytes get a new key), so the
//!   deterministic nonces never repeat under one key.
//!
//! Secrets in memory: the passphrase, derived keys and content keys are `Zeroizing`; the
//! secret key is `crypto_box::SecretKey` (its scalar is zeroized on drop). Every `Debug`
//! here is redacted.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use crypto_box::{PublicKey, SecretKey, KEY_SIZE, SEALBYTES};
use keliling_shared::Sha256;
use rand::rngs::OsRng;
use rand::RngCore;
use std::fmt;
use zeroize::Zeroizing;

/// A new passphrase must have at least this many characters.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

const TAG: usize = 16;
const SALT: usize = 16;
const CONTENT_KEY: usize = 32;
/// Version byte of a sealed record (`applications.record`).
const RECORD_V1: u8 = 1;
const AAD_WRAP: &[u8] = b"keliling/bus/vault-key/v1";
const AAD_RECORD: &[u8] = b"keliling/bus/record/v1";
const AAD_BLOB: &[u8] = b"keliling/bus/blob/v1";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("kata sandi salah (wrong passphrase)")]
    WrongPassphrase,
    #[error(
        "kata sandi terlalu pendek: paling sedikit {MIN_PASSPHRASE_CHARS} karakter \
         (passphrase too short: at least {MIN_PASSPHRASE_CHARS} characters)"
    )]
    WeakPassphrase,
    #[error("kedua kata sandi tidak sama (the two passphrases differ)")]
    PassphraseMismatch,
    #[error(
        "{0} tidak dapat dibuka: rusak atau diubah (cannot be decrypted: damaged or tampered with)"
    )]
    Undecryptable(String),
    #[error("kunci bus tersimpan rusak (stored bus key is corrupt): {0}")]
    BadKey(String),
    #[error(
        "kunci ini bukan milik basis data bus ini (this key does not belong to this bus store)"
    )]
    KeyMismatch,
    #[error("enkripsi gagal (encryption failed): {0}")]
    Crypto(String),
}

/// The operator's passphrase. Zeroized when dropped; never printed.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    pub fn new(s: String) -> Passphrase {
        Passphrase(Zeroizing::new(s))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The text, for a PIN typed at the same prompt (`bus-node operator add`).
    pub fn as_str_for_pin(&self) -> &str {
        self.0.as_str()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Without the line ending a line read from stdin ends with (in place: no copy).
    pub fn trim_line_end(mut self) -> Passphrase {
        let len = self.0.trim_end_matches(['\n', '\r']).len();
        self.0.truncate(len);
        self
    }

    /// Whether it is long enough for a new vault.
    pub fn check_new(&self) -> Result<(), VaultError> {
        if self.0.chars().count() < MIN_PASSPHRASE_CHARS {
            return Err(VaultError::WeakPassphrase);
        }
        Ok(())
    }

    /// The same passphrase typed twice.
    pub fn confirm(self, again: &Passphrase) -> Result<Passphrase, VaultError> {
        if self.0.as_str() != again.0.as_str() {
            return Err(VaultError::PassphraseMismatch);
        }
        Ok(self)
    }
}

impl From<String> for Passphrase {
    fn from(s: String) -> Self {
        Passphrase::new(s)
    }
}

impl From<&str> for Passphrase {
    fn from(s: &str) -> Self {
        Passphrase::new(s.to_owned())
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// Argon2id cost: what it takes to try one passphrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    /// 64 MiB, 3 passes, 1 lane (about a third of a second on the bus's 2 cores).
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 64 * 1024,
        t: 3,
        p: 1,
    };
    /// Cheap, for tests and benchmarks only: it makes guessing a passphrase cheap too.
    pub const INSECURE_FAST: KdfParams = KdfParams {
        m_kib: 1024,
        t: 1,
        p: 1,
    };
    // Unlock refuses more than this, so a tampered store cannot make it hang or run out
    // of memory.
    const MAX_M_KIB: u32 = 1024 * 1024;
    const MAX_T: u32 = 64;
    const MAX_P: u32 = 16;

    fn argon2(&self) -> Result<argon2::Argon2<'static>, VaultError> {
        if self.m_kib > Self::MAX_M_KIB || self.t > Self::MAX_T || self.p > Self::MAX_P {
            return Err(VaultError::BadKey(format!(
                "Argon2 cost too high: {self:?}"
            )));
        }
        let params = argon2::Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| VaultError::BadKey(format!("Argon2 parameters: {e}")))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams::DEFAULT
    }
}

/// The bus secret key as stored: encrypted under a key derived from the passphrase.
/// Text form: `argon2id$v=19$m=65536,t=3,p=1$<salt>$<nonce>$<ciphertext>` (hex).
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    params: KdfParams,
    salt: [u8; SALT],
    nonce: [u8; 24],
    ciphertext: Vec<u8>,
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl WrappedKey {
    pub fn params(&self) -> KdfParams {
        self.params
    }

    pub fn encode(&self) -> String {
        format!(
            "argon2id$v=19$m={},t={},p={}${}${}${}",
            self.params.m_kib,
            self.params.t,
            self.params.p,
            hex::encode(self.salt),
            hex::encode(self.nonce),
            hex::encode(&self.ciphertext)
        )
    }

    pub fn parse(s: &str) -> Result<WrappedKey, VaultError> {
        let bad = |why: &str| VaultError::BadKey(why.to_owned());
        let parts: Vec<&str> = s.split('$').collect();
        let [alg, ver, params, salt, nonce, ct] = parts[..] else {
            return Err(bad("expected 6 fields"));
        };
        if alg != "argon2id" || ver != "v=19" {
            return Err(bad("unknown key derivation"));
        }
        let mut m = None;
        let mut t = None;
        let mut p = None;
        for kv in params.split(',') {
            let (k, v) = kv.split_once('=').ok_or_else(|| bad("Argon2 parameters"))?;
            let v: u32 = v.parse().map_err(|_| bad("Argon2 parameters"))?;
            match k {
                "m" => m = Some(v),
                "t" => t = Some(v),
                "p" => p = Some(v),
                _ => return Err(bad("Argon2 parameters")),
            }
        }
        let (Some(m_kib), Some(t), Some(p)) = (m, t, p) else {
            return Err(bad("Argon2 parameters"));
        };
        let array = |h: &str, what: &str| -> Result<Vec<u8>, VaultError> {
            hex::decode(h).map_err(|_| bad(what))
        };
        let salt: [u8; SALT] = array(salt, "salt")?
            .try_into()
            .map_err(|_| bad("salt length"))?;
        let nonce: [u8; 24] = array(nonce, "nonce")?
            .try_into()
            .map_err(|_| bad("nonce length"))?;
        let ciphertext = array(ct, "ciphertext")?;
        if ciphertext.len() != KEY_SIZE + TAG {
            return Err(bad("ciphertext length"));
        }
        Ok(WrappedKey {
            params: KdfParams { m_kib, t, p },
            salt,
            nonce,
            ciphertext,
        })
    }

    fn aad(&self, public: &SealingKey) -> Vec<u8> {
        let mut aad = AAD_WRAP.to_vec();
        aad.extend_from_slice(public.0.as_bytes());
        for v in [self.params.m_kib, self.params.t, self.params.p] {
            aad.extend_from_slice(&v.to_be_bytes());
        }
        aad.extend_from_slice(&self.salt);
        aad
    }
}

fn derive_kek(
    params: KdfParams,
    passphrase: &Passphrase,
    salt: &[u8],
) -> Result<XChaCha20Poly1305, VaultError> {
    let mut kek = Zeroizing::new([0u8; 32]);
    params
        .argon2()?
        .hash_password_into(passphrase.as_bytes(), salt, kek.as_mut())
        .map_err(|e| VaultError::Crypto(format!("Argon2: {e}")))?;
    // The cipher zeroizes its copy of the key when dropped.
    Ok(XChaCha20Poly1305::new(kek.as_ref().into()))
}

/// The bus public key: enough to encrypt (capture), not to decrypt.
#[derive(Clone, PartialEq, Eq)]
pub struct SealingKey(PublicKey);

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingKey({})", self.fingerprint())
    }
}

/// A blob's bytes as stored: its sealed content key and its encrypted segments.
pub struct SealedBlob {
    pub sealed_key: Vec<u8>,
    pub segment_size: u32,
    pub data: Vec<u8>,
}

impl SealingKey {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    pub fn parse_hex(s: &str) -> Result<SealingKey, VaultError> {
        let bytes: [u8; KEY_SIZE] = hex::decode(s)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| VaultError::BadKey("public key".into()))?;
        Ok(SealingKey(PublicKey::from(bytes)))
    }

    /// A short, public name for the key (first 8 bytes of its hex), for logs and status.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.0.as_bytes()[..8])
    }

    fn new_content_key(&self) -> Result<(Zeroizing<[u8; CONTENT_KEY]>, Vec<u8>), VaultError> {
        let mut key = Zeroizing::new([0u8; CONTENT_KEY]);
        OsRng.fill_bytes(key.as_mut());
        let sealed = self
            .0
            .seal(&mut OsRng, key.as_ref())
            .map_err(|_| VaultError::Crypto("sealed box".into()))?;
        Ok((key, sealed))
    }

    /// Encrypts an application record (its stored bytes) for application `id`.
    pub fn seal_record(&self, id: &str, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let (key, sealed) = self.new_content_key()?;
        let cipher = XChaCha20Poly1305::new(key.as_ref().into());
        let ct = cipher
            .encrypt(
                &segment_nonce(0, true),
                Payload {
                    msg: plaintext,
                    aad: &record_aad(id),
                },
            )
            .map_err(|_| VaultError::Crypto("record".into()))?;
        let mut out = Vec::with_capacity(1 + sealed.len() + ct.len());
        out.push(RECORD_V1);
        out.extend_from_slice(&sealed);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Encrypts a blob in segments of `segment_size` bytes (the last may be shorter).
    pub fn seal_blob(
        &self,
        sha: &Sha256,
        bytes: &[u8],
        segment_size: u32,
    ) -> Result<SealedBlob, VaultError> {
        if segment_size == 0 {
            return Err(VaultError::Crypto("segment size 0".into()));
        }
        let (key, sealed_key) = self.new_content_key()?;
        let cipher = XChaCha20Poly1305::new(key.as_ref().into());
        let size = bytes.len() as u64;
        let layout = Layout { size, segment_size };
        let mut data = Vec::with_capacity(layout.stored_len() as usize);
        let count = layout.count();
        for index in 0..count {
            let r = layout.plain_range(index);
            let ct = cipher
                .encrypt(
                    &segment_nonce(index, index + 1 == count),
                    Payload {
                        msg: &bytes[r.start as usize..r.end as usize],
                        aad: &blob_aad(sha, size, segment_size, index),
                    },
                )
                .map_err(|_| VaultError::Crypto("blob".into()))?;
            data.extend_from_slice(&ct);
        }
        Ok(SealedBlob {
            sealed_key,
            segment_size,
            data,
        })
    }
}

/// How a blob of `size` bytes is cut into segments. An empty blob has one empty segment.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub size: u64,
    pub segment_size: u32,
}

impl Layout {
    pub fn count(&self) -> u32 {
        keliling_shared::wire::chunk_count(self.size, self.segment_size).max(1)
    }

    fn plain_range(&self, index: u32) -> std::ops::Range<u64> {
        keliling_shared::wire::chunk_range(self.size, self.segment_size, index)
    }

    /// Where segment `index` sits in the stored bytes.
    pub fn stored_range(&self, index: u32) -> std::ops::Range<u64> {
        let start = u64::from(index) * (u64::from(self.segment_size) + TAG as u64);
        let r = self.plain_range(index);
        start..start + (r.end - r.start) + TAG as u64
    }

    pub fn stored_len(&self) -> u64 {
        self.stored_range(self.count() - 1).end
    }

    /// The segments that hold the plaintext bytes `range`.
    pub fn segments_for(&self, range: &std::ops::Range<u64>) -> std::ops::RangeInclusive<u32> {
        let seg = u64::from(self.segment_size);
        let first = range.start / seg;
        let last = range.end.saturating_sub(1).max(range.start) / seg;
        let clamp = |i: u64| u32::try_from(i).unwrap_or(u32::MAX).min(self.count() - 1);
        clamp(first)..=clamp(last)
    }
}

fn segment_nonce(index: u32, last: bool) -> XNonce {
    let mut n = [0u8; 24];
    n[..4].copy_from_slice(&index.to_be_bytes());
    n[4] = u8::from(last);
    n.into()
}

fn record_aad(id: &str) -> Vec<u8> {
    let mut aad = AAD_RECORD.to_vec();
    aad.extend_from_slice(id.as_bytes());
    aad
}

fn blob_aad(sha: &Sha256, size: u64, segment_size: u32, index: u32) -> Vec<u8> {
    let mut aad = AAD_BLOB.to_vec();
    aad.extend_from_slice(sha.as_bytes());
    aad.extend_from_slice(&size.to_be_bytes());
    aad.extend_from_slice(&segment_size.to_be_bytes());
    aad.extend_from_slice(&index.to_be_bytes());
    aad
}

/// The unlocked bus key: decrypts records and blobs. Lives in memory for a shift only.
pub struct UnlockedVault {
    secret: SecretKey,
    public: SealingKey,
}

impl fmt::Debug for UnlockedVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UnlockedVault({}, <secret redacted>)",
            self.public.fingerprint()
        )
    }
}

/// The NIK index key; zeroized when dropped.
pub struct IndexKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IndexKey(<redacted>)")
    }
}

impl IndexKey {
    /// The index entry of a NIK: a keyed BLAKE2b-128 of its digits.
    pub fn tag(&self, nik: &keliling_shared::Nik) -> [u8; 16] {
        use blake2::digest::{FixedOutput, KeyInit, Update};
        let mut mac =
            blake2::Blake2bMac::<blake2::digest::consts::U16>::new_from_slice(self.0.as_ref())
                .unwrap_or_else(|_| unreachable!("32-byte key"));
        mac.update(nik.as_str().as_bytes());
        mac.finalize_fixed().into()
    }
}

/// A blob's content key, unsealed; zeroized when dropped.
pub struct BlobKey(XChaCha20Poly1305);

impl fmt::Debug for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlobKey(<redacted>)")
    }
}

impl UnlockedVault {
    /// A new key pair, for a new bus store.
    pub fn generate() -> UnlockedVault {
        let secret = SecretKey::generate(&mut OsRng);
        let public = SealingKey(secret.public_key());
        UnlockedVault { secret, public }
    }

    pub fn sealing_key(&self) -> &SealingKey {
        &self.public
    }

    /// The secret key encrypted under `passphrase`, with a new salt.
    pub fn wrap(
        &self,
        passphrase: &Passphrase,
        params: KdfParams,
    ) -> Result<WrappedKey, VaultError> {
        let mut salt = [0u8; SALT];
        OsRng.fill_bytes(&mut salt);
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let mut wrapped = WrappedKey {
            params,
            salt,
            nonce,
            ciphertext: Vec::new(),
        };
        let kek = derive_kek(params, passphrase, &salt)?;
        let secret = Zeroizing::new(self.secret.to_bytes());
        wrapped.ciphertext = kek
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: secret.as_ref(),
                    aad: &wrapped.aad(&self.public),
                },
            )
            .map_err(|_| VaultError::Crypto("wrapping the key".into()))?;
        Ok(wrapped)
    }

    /// Unwraps the secret key with `passphrase` and checks it belongs to `public`.
    pub fn unwrap(
        wrapped: &WrappedKey,
        public: &SealingKey,
        passphrase: &Passphrase,
    ) -> Result<UnlockedVault, VaultError> {
        let kek = derive_kek(wrapped.params, passphrase, &wrapped.salt)?;
        let bytes = Zeroizing::new(
            kek.decrypt(
                &wrapped.nonce.into(),
                Payload {
                    msg: &wrapped.ciphertext,
                    aad: &wrapped.aad(public),
                },
            )
            // The associated data binds the public key and the parameters, so a wrong
            // passphrase and a swapped public key both end here.
            .map_err(|_| VaultError::WrongPassphrase)?,
        );
        let array: Zeroizing<[u8; KEY_SIZE]> = Zeroizing::new(
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| VaultError::BadKey("secret key length".into()))?,
        );
        let secret = SecretKey::from(*array);
        if secret.public_key() != public.0 {
            return Err(VaultError::KeyMismatch);
        }
        Ok(UnlockedVault {
            secret,
            public: public.clone(),
        })
    }

    fn unseal_key(
        &self,
        sealed: &[u8],
        what: &dyn Fn() -> String,
    ) -> Result<XChaCha20Poly1305, VaultError> {
        if sealed.len() != SEALBYTES + CONTENT_KEY {
            return Err(VaultError::Undecryptable(what()));
        }
        let key = Zeroizing::new(
            self.secret
                .unseal(sealed)
                .map_err(|_| VaultError::Undecryptable(what()))?,
        );
        if key.len() != CONTENT_KEY {
            return Err(VaultError::Undecryptable(what()));
        }
        Ok(XChaCha20Poly1305::new(key.as_slice().into()))
    }

    /// The key of the bus's NIK index (`lookup.rs`): derived from the secret key, so only
    /// an unlocked bus can compute or search the index, and a copied disk cannot test a
    /// guessed NIK against it.
    pub fn index_key(&self) -> IndexKey {
        use blake2::digest::{FixedOutput, KeyInit, Update};
        let secret = Zeroizing::new(self.secret.to_bytes());
        let mut mac =
            blake2::Blake2bMac::<blake2::digest::consts::U32>::new_from_slice(secret.as_ref())
                // A 32-byte key is within BLAKE2b's 64-byte limit: this cannot fail.
                .unwrap_or_else(|_| unreachable!("32-byte key"));
        mac.update(b"keliling nik index v1");
        IndexKey(Zeroizing::new(mac.finalize_fixed().into()))
    }

    /// Decrypts the record of application `id` (as [`SealingKey::seal_record`] made it).
    pub fn open_record(&self, id: &str, stored: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let what = || format!("catatan permohonan {id} (application record)");
        let sealed_len = SEALBYTES + CONTENT_KEY;
        if stored.len() < 1 + sealed_len + TAG || stored[0] != RECORD_V1 {
            return Err(VaultError::Undecryptable(what()));
        }
        let cipher = self.unseal_key(&stored[1..1 + sealed_len], &what)?;
        cipher
            .decrypt(
                &segment_nonce(0, true),
                Payload {
                    msg: &stored[1 + sealed_len..],
                    aad: &record_aad(id),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Undecryptable(what()))
    }

    /// Unseals a blob's content key.
    pub fn blob_key(&self, sha: &Sha256, sealed_key: &[u8]) -> Result<BlobKey, VaultError> {
        let what = || format!("kunci lampiran {sha:?} (attachment key)");
        self.unseal_key(sealed_key, &what).map(BlobKey)
    }
}

impl BlobKey {
    /// Decrypts segment `index` of a blob laid out as `layout`.
    pub fn open_segment(
        &self,
        sha: &Sha256,
        layout: Layout,
        index: u32,
        stored: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        self.0
            .decrypt(
                &segment_nonce(index, index + 1 == layout.count()),
                Payload {
                    msg: stored,
                    aad: &blob_aad(sha, layout.size, layout.segment_size, index),
                },
            )
            .map_err(|_| {
                VaultError::Undecryptable(format!(
                    "lampiran {sha:?} bagian {index} (attachment segment)"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_round_trips_and_refuses_a_wrong_passphrase() {
        let v = UnlockedVault::generate();
        let pass = Passphrase::from("kata sandi yang panjang");
        let w = v.wrap(&pass, KdfParams::INSECURE_FAST).unwrap();
        let parsed = WrappedKey::parse(&w.encode()).unwrap();
        assert_eq!(parsed, w);
        let u = UnlockedVault::unwrap(&parsed, v.sealing_key(), &pass).unwrap();
        assert_eq!(u.sealing_key(), v.sealing_key());
        assert!(matches!(
            UnlockedVault::unwrap(&parsed, v.sealing_key(), &"salah salah salah".into()),
            Err(VaultError::WrongPassphrase)
        ));
        // Another public key beside the wrapped secret: refused too.
        let other = UnlockedVault::generate();
        assert!(UnlockedVault::unwrap(&parsed, other.sealing_key(), &pass).is_err());
        assert!(!format!("{v:?} {pass:?} {w:?}").contains("panjang"));
    }

    #[test]
    fn segments_line_up_and_are_bound_to_their_place() {
        let v = UnlockedVault::generate();
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let sha = Sha256::digest(&bytes);
        let sealed = v.sealing_key().seal_blob(&sha, &bytes, 4096).unwrap();
        let layout = Layout {
            size: bytes.len() as u64,
            segment_size: 4096,
        };
        assert_eq!(layout.count(), 3);
        assert_eq!(sealed.data.len() as u64, layout.stored_len());
        let key = v.blob_key(&sha, &sealed.sealed_key).unwrap();
        let mut out = Vec::new();
        for i in 0..3 {
            let r = layout.stored_range(i);
            out.extend(
                key.open_segment(
                    &sha,
                    layout,
                    i,
                    &sealed.data[r.start as usize..r.end as usize],
                )
                .unwrap(),
            );
        }
        assert_eq!(out, bytes);
        // Segment 0 presented as segment 1 fails.
        let r = layout.stored_range(0);
        assert!(key
            .open_segment(
                &sha,
                layout,
                1,
                &sealed.data[r.start as usize..r.end as usize]
            )
            .is_err());
        assert_eq!(layout.segments_for(&(4000..4100)), 0..=1);
        assert_eq!(layout.segments_for(&(4096..8192)), 1..=1);
        assert_eq!(layout.segments_for(&(0..0)), 0..=0);
    }

    #[test]
    fn a_record_is_bound_to_its_id() {
        let v = UnlockedVault::generate();
        let sealed = v
            .sealing_key()
            .seal_record("a", b"NIK 5371015203900001")
            .unwrap();
        assert_eq!(
            &v.open_record("a", &sealed).unwrap()[..],
            b"NIK 5371015203900001"
        );
        assert!(matches!(
            v.open_record("b", &sealed),
            Err(VaultError::Undecryptable(_))
        ));
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(v.open_record("a", &bad).is_err());
        assert!(v.open_record("a", &sealed[..10]).is_err());
    }
}
